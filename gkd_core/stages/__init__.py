"""Training stages as ``nn.Module`` tasks whose ``forward(batch)`` returns a loss dict."""

from gkd_core.stages.stage1 import Stage1Result, Stage1Task, make_patch_mask, run_stage1

__all__ = ["Stage1Result", "Stage1Task", "make_patch_mask", "run_stage1"]

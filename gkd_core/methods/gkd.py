"""GKD (Lv et al., CVPR 2026): QSD distillation without labels, then a head on the frozen student.

Stage 1 runs the proxy step 1a (when a proxy set is given) and the source step 1b with QSD heads
(gkd_core.stages.stage1); stage 2 freezes the distilled encoder and trains only the decode head.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from gkd_core.config import Stage1Config
from gkd_core.methods._registry import register_method
from gkd_core.methods.base import STAGE1, STAGE2, DistillMethod, MethodTraits

if TYPE_CHECKING:
    from gkd_core.experiment.run import ExperimentRun
    from gkd_core.stages.stage2 import SegmentationModel


@register_method
class GKD(DistillMethod):
    """The paper's method; the stage-1 head comes from the config (QSD unless it says otherwise)."""

    name = "gkd"
    traits = MethodTraits(
        stages=(STAGE1, STAGE2), teacher="tokens", stage1_head="qsd", encoder="frozen", proxy="optional"
    )

    def stage1_config(self, cfg: Stage1Config) -> Stage1Config:
        """The stage-1 options this method trains with (GKD uses the configured ones as they are)."""
        return cfg

    def distil(self, run: ExperimentRun) -> nn.Module:
        cfg = run.cfg
        return run.distil(
            source=self.stage1_config(cfg.stage1),
            proxy=self.stage1_config(cfg.proxy_stage1 or cfg.stage1),
        )

    def train_student(self, run: ExperimentRun, distilled: nn.Module | None) -> SegmentationModel:
        if distilled is None:
            raise TypeError(f"{self.name}: stage 2 needs the distilled encoder of stage 1")
        return run.train_head_on_frozen(distilled)

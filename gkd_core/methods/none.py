"""No distillation: the student with a head trained on the source, encoder frozen or fine-tuned.

The "student, no KD" rows of the paper's table; fine-tuning is also how the synthetic benchmark
pretrains its robust teacher on the style pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from gkd_core.methods._registry import register_method
from gkd_core.methods.base import STAGE2, DistillMethod, MethodTraits
from gkd_core.stages.stage2 import SegmentationTask

if TYPE_CHECKING:
    from gkd_core.experiment.run import ExperimentRun
    from gkd_core.stages.stage2 import SegmentationModel


@register_method
class NoDistillation(DistillMethod):
    name = "none"
    traits = MethodTraits(stages=(STAGE2,), teacher="unused", stage1_head=None, encoder="either")

    def train_student(self, run: ExperimentRun, distilled: nn.Module | None) -> SegmentationModel:
        fresh = run.fresh("stage2")

        def build() -> tuple[nn.Module, SegmentationModel]:
            backbone = run.build_backbone(run.cfg.student, fresh_weights=fresh)
            model = run.seg_model(backbone, frozen=not run.cfg.finetune)
            return SegmentationTask(model, run.ignore_index), model

        return run.train_seg("stage2", build, seed_offset=1)

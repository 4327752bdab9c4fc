"""What the logit baselines (kd, cwd) share: a teacher segmentation model, then one fine-tuning run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from gkd_core.stages.baselines import LogitDistillTask, LogitLoss
from gkd_core.stages.stage2 import SegmentationModel

if TYPE_CHECKING:
    from gkd_core.experiment.run import ExperimentRun


def train_with_logit_distillation(run: ExperimentRun, name: str, distill: LogitLoss) -> SegmentationModel:
    """Train the teacher's own head on the source (or load it), then fine-tune the student with CE + ``distill``."""
    teacher = run.teacher_model()
    fresh = run.fresh("stage2")

    def build() -> tuple[nn.Module, SegmentationModel]:
        model = run.seg_model(run.build_backbone(run.cfg.student, fresh_weights=fresh), frozen=False)
        task = LogitDistillTask(
            model, teacher, distill, name=name, weight=run.cfg.stage2.distill_weight, ignore_index=run.ignore_index
        )
        return task, model

    return run.train_seg("stage2", build, seed_offset=1, exclude=("teacher.",))

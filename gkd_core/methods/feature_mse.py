"""Single-stage feature distillation: CE + MSE between projected student tokens and teacher tokens.

The coupled counterpart of GKD's stage 1 (same teacher targets, trained together with the task
loss), as in METHOD.md's feature_mse baseline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from gkd_core.methods._registry import register_method
from gkd_core.methods.base import STAGE2, DistillMethod, MethodTraits
from gkd_core.stages.baselines import FeatureMSETask

if TYPE_CHECKING:
    from gkd_core.experiment.run import ExperimentRun
    from gkd_core.stages.stage2 import SegmentationModel


@register_method
class FeatureMSE(DistillMethod):
    name = "feature_mse"
    traits = MethodTraits(stages=(STAGE2,), teacher="features", stage1_head=None, encoder="trainable")

    def train_student(self, run: ExperimentRun, distilled: nn.Module | None) -> SegmentationModel:
        from gkd_core.models.teacher import build_teacher

        cfg = run.cfg
        fresh = run.fresh("stage2")

        def build() -> tuple[nn.Module, SegmentationModel]:
            backbone = run.build_backbone(cfg.student, fresh_weights=fresh)
            teacher = build_teacher(cfg.teacher, backbone, precision="fp32")  # type: ignore[arg-type]
            model = run.seg_model(backbone, frozen=False)
            task = FeatureMSETask(
                model, teacher, teacher.embed_dim, weight=cfg.stage2.distill_weight, ignore_index=run.ignore_index
            )
            return task.to(run.device), model

        return run.train_seg("stage2", build, seed_offset=1, exclude=("teacher.",))

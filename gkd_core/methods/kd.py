"""Vanilla KD (Hinton et al.): one stage, CE + T^2 KL between per-pixel class distributions.

The teacher is the teacher backbone with its own head trained on the source (METHOD.md, kd); the
student encoder and head are fine-tuned together, which is the coupling GKD removes.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from torch import nn

from gkd_core.losses.distill_baselines import kd_pixel_loss
from gkd_core.methods._logit import train_with_logit_distillation
from gkd_core.methods._registry import register_method
from gkd_core.methods.base import STAGE2, DistillMethod, MethodTraits

if TYPE_CHECKING:
    from gkd_core.experiment.run import ExperimentRun
    from gkd_core.stages.stage2 import SegmentationModel


@register_method
class KD(DistillMethod):
    name = "kd"
    traits = MethodTraits(stages=(STAGE2,), teacher="logits", stage1_head=None, encoder="trainable")

    def train_student(self, run: ExperimentRun, distilled: nn.Module | None) -> SegmentationModel:
        loss = partial(kd_pixel_loss, temperature=run.cfg.stage2.kd_temperature, ignore_index=run.ignore_index)
        return train_with_logit_distillation(run, self.name, loss)

"""Channel-wise distillation (Shu et al., ICCV 2021) on the segmentation logits, in one stage.

Per class channel, a softmax over spatial positions of the teacher model's and the student's logits;
the student encoder and head are fine-tuned with CE plus that KL term.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from gkd_core.losses.distill_baselines import cwd_loss
from gkd_core.methods._logit import train_with_logit_distillation
from gkd_core.methods._registry import register_method
from gkd_core.methods.base import STAGE2, DistillMethod, MethodTraits

if TYPE_CHECKING:
    from gkd_core.experiment.run import ExperimentRun
    from gkd_core.stages.stage2 import SegmentationModel


@register_method
class CWD(DistillMethod):
    name = "cwd"
    traits = MethodTraits(stages=(STAGE2,), teacher="logits", stage1_head=None, encoder="trainable")

    def train_student(self, run: ExperimentRun, distilled: nn.Module | None) -> SegmentationModel:
        temperature = run.cfg.stage2.cwd_temperature

        def loss(student: Tensor, teacher: Tensor, masks: Tensor) -> Tensor:
            return cwd_loss(student, teacher, temperature)  # CWD spreads over all positions: no label mask

        return train_with_logit_distillation(run, self.name, loss)

"""Single-stage baselines of METHOD.md as trainer tasks: KD, CWD and feature MSE.

Each one fine-tunes the whole student (encoder and head) with the task cross-entropy plus a
distillation term, which is exactly the coupling GKD removes. ``none`` (no teacher) is a plain
:class:`~gkd_core.stages.stage2.SegmentationTask` on a frozen or trainable encoder; ``proteus``
is stage 1 with projection heads followed by the usual stage 2, so neither needs a task here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from gkd_core.losses.distill_baselines import FeatureProjector, feature_mse_loss
from gkd_core.stages.stage2 import IGNORE_INDEX, SegmentationModel, freeze_module, resize_levels

_logger = logging.getLogger(__name__)

LogitLoss = Callable[[Tensor, Tensor, Tensor], Tensor]
"""``(student_logits, teacher_logits, masks) -> loss``: the distillation term of a logit baseline."""


class FrozenModel(nn.Module):
    """A trained model used only as a source of targets: eval mode, no gradients, detached outputs."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        freeze_module(model)
        self.model = model

    def train(self, mode: bool = True) -> FrozenModel:
        """Stay in eval mode whatever the enclosing task asks for (BatchNorm/dropout stay fixed)."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.model(*args, **kwargs)


class LogitDistillTask(nn.Module):
    """CE + ``weight`` x a distillation term between the student's and the frozen teacher model's logits.

    The teacher model is the teacher backbone with its own segmentation head trained on the source
    (METHOD.md, kd). Which term (pixel KD, CWD, ...) is the caller's choice: the method modules in
    :mod:`gkd_core.methods` pass theirs and the name it is logged under. ``teacher.`` state is not part of
    checkpoints of this task.
    """

    def __init__(
        self,
        student: SegmentationModel,
        teacher: nn.Module,
        distill: LogitLoss,
        *,
        name: str,
        weight: float = 1.0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher if isinstance(teacher, FrozenModel) else FrozenModel(teacher)
        self.distill = distill
        self.name = name
        self.weight = float(weight)
        self.ignore_index = ignore_index

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        images, masks = batch["image"], batch["mask"]
        # The head's own training loss (CE for dense heads, the set loss for Mask2Former) plus the term on
        # the semantic logits its inference produces (for Mask2Former: softmax(class) x sigmoid(mask)).
        task, logits = self.student.head.loss_and_logits(self.student.features(images), masks, self.ignore_index)
        target_logits = self.teacher(images)
        distill = self.distill(logits, target_logits, masks)
        return {**task, "loss": task["loss"] + self.weight * distill, self.name: distill.detach()}


class FeatureMSETask(nn.Module):
    """CE + ``weight`` x MSE between projected student tokens (last level) and teacher tokens.

    ``teacher`` is called as ``teacher(images, grid=(h, w))`` and returns final-normed tokens on the
    student's grid (A's :class:`~gkd_core.models.teacher.Teacher`); it is frozen here.
    """

    def __init__(
        self,
        student: SegmentationModel,
        teacher: nn.Module,
        teacher_dim: int,
        *,
        weight: float = 1.0,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        self.student = student
        self.teacher = teacher if isinstance(teacher, FrozenModel) else FrozenModel(teacher)
        student_dim = int(student.head.in_dims[-1])
        self.projector = FeatureProjector(student_dim, int(teacher_dim))
        self.weight = float(weight)
        self.ignore_index = ignore_index

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        images, masks = batch["image"], batch["mask"]
        raw = self.student.raw_levels(images)
        task = self.student.head.loss(resize_levels(raw, (int(images.shape[-2]), int(images.shape[-1]))), masks,
                                      self.ignore_index)
        last = raw[-1]
        grid = (int(last.shape[-2]), int(last.shape[-1]))
        tokens = last.flatten(2).transpose(1, 2)
        target = self.teacher(images, grid=grid).patches.float()
        feat = feature_mse_loss(self.projector(tokens), target)
        return {**task, "loss": task["loss"] + self.weight * feat, "feature_mse": feat.detach()}

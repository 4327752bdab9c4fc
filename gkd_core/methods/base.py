"""What a distillation method is to the experiment runner: traits plus the stage tasks it builds.

A method module (one per method, registered with :func:`gkd_core.methods.register_method`) says
which stages it has and how it uses the teacher (its :class:`MethodTraits`), and builds its own
stage-1 distillation and stage-2 training through the shared helpers of
:class:`~gkd_core.experiment.run.ExperimentRun`. The runner only walks phases; it never asks
which method it runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from torch import nn

if TYPE_CHECKING:
    from gkd_core.experiment.run import ExperimentRun
    from gkd_core.stages.stage2 import SegmentationModel

STAGE1 = "stage1"
STAGE2 = "stage2"


@dataclass(frozen=True)
class MethodTraits:
    """The facts about a method that the service must know without running it (gkd_catalog mirrors them).

    Attributes:
        stages: ``("stage1", "stage2")`` for decoupled methods, ``("stage2",)`` for single-stage ones.
        teacher: ``unused``, ``tokens`` (stage 1 distils the teacher's final tokens; ViT teacher),
            ``logits`` (a teacher segmentation model trained on the source gives targets) or
            ``features`` (teacher tokens are a target while stage 2 trains).
        stage1_head: the default stage-1 patch-token head (``None`` without stage 1).
        encoder: whether the student encoder trains in stage 2: ``frozen``, ``trainable`` or
            ``either`` (the experiment's ``finetune`` flag picks).
        proxy: what the method does with a proxy image set: ``unused`` (no stage 1), ``optional``
            (step 1a runs when one is given) or ``only`` (stage 1 is the proxy step alone; required).
    """

    stages: tuple[str, ...]
    teacher: Literal["unused", "tokens", "logits", "features"]
    stage1_head: str | None
    encoder: Literal["frozen", "trainable", "either"]
    proxy: Literal["unused", "optional", "only"] = "unused"

    @property
    def two_stage(self) -> bool:
        return STAGE1 in self.stages


class DistillMethod:
    """Base class of a method: override :meth:`distil` (two-stage methods) and :meth:`train_student`."""

    name: ClassVar[str]
    traits: ClassVar[MethodTraits]

    def distil(self, run: ExperimentRun) -> nn.Module:
        """Stage 1: the distilled student encoder. Only methods whose traits list ``stage1`` have one."""
        raise TypeError(f"method {self.name!r} has no stage 1")

    def train_student(self, run: ExperimentRun, distilled: nn.Module | None) -> SegmentationModel:
        """Stage 2: the student segmentation model that is evaluated and exported."""
        raise TypeError(f"method {self.name!r} does not define its stage 2")

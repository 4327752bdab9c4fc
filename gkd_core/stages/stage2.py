"""Stage 2 of GKD: train a segmentation head on a frozen, distilled student (METHOD.md, stage 2).

Decoupling is the paper's largest effect: the task loss never reaches the encoder, so the
representation learned from the teacher in stage 1 is kept intact. The frozen encoder runs in eval
mode under ``no_grad``; four block features spread over the depth are resized to strides 4, 8, 16
and 32 and decoded by a head trained with cross-entropy (ignore index 255).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkd_core.errors import ConfigError
from gkd_core.models.heads import SegHead

_logger = logging.getLogger(__name__)

STRIDES = (4, 8, 16, 32)
# Blocks 4, 6, 8, 12 of a 12-block ViT (the paper) are these fractions of the depth.
_DEPTH_FRACTIONS = (1 / 3, 1 / 2, 2 / 3, 1.0)
IGNORE_INDEX = 255


class LevelBackbone(Protocol):
    """What stage 2 needs of a backbone (A's ``Backbone``): width, depth and raw level maps."""

    embed_dim: int
    num_blocks: int

    def forward_levels(self, x: Tensor, indices: Sequence[int]) -> list[Tensor]: ...


@dataclass(frozen=True)
class Stage2Config:
    """Stage-2 (and single-stage baseline) schedule. Defaults follow the paper except the head."""

    steps: int = 40_000
    batch_size: int = 4
    lr: float = 1e-4
    weight_decay: float = 0.05
    power: float = 0.9
    crop_size: int = 512
    head: str = "fpn"
    head_channels: int = 128
    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    photometric: bool = True
    eval_window: int | None = None  # None: crop_size
    eval_stride: int | None = None  # None: two thirds of the window (512 -> 341)
    checkpoint_every: int = 500
    num_workers: int = 0
    backbone_lr_mult: float = 1.0  # fine-tuned baselines only
    kd_temperature: float = 1.0
    cwd_temperature: float = 4.0
    distill_weight: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"stage2.steps must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise ConfigError(f"stage2.batch_size must be at least 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ConfigError(f"stage2.lr must be positive, got {self.lr}")
        if self.crop_size < 32:
            raise ConfigError(f"stage2.crop_size must be at least 32 pixels, got {self.crop_size}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"stage2.scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if self.checkpoint_every < 1:
            raise ConfigError(f"stage2.checkpoint_every must be at least 1, got {self.checkpoint_every}")

    @property
    def window(self) -> int:
        """Sliding-window size for evaluation."""
        return self.eval_window or self.crop_size

    @property
    def stride(self) -> int:
        """Sliding-window stride for evaluation (paper: 341 for a 512 window)."""
        return self.eval_stride or max(1, (self.window * 2) // 3)


def level_indices(num_blocks: int) -> list[int]:
    """Four block indices (0-based) spread over the depth with the last block included.

    12 blocks give 3, 5, 7, 11 (the paper's blocks 4, 6, 8, 12); shallow models repeat blocks.
    """
    if num_blocks < 1:
        raise ConfigError(f"a backbone needs at least one block, got {num_blocks}")
    return [max(1, round(num_blocks * f)) - 1 for f in _DEPTH_FRACTIONS]


def level_sizes(image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """Feature-map sizes at strides 4, 8, 16, 32 for an input of ``image_size``."""
    h, w = image_size
    return [(max(1, math.ceil(h / s)), max(1, math.ceil(w / s))) for s in STRIDES]


def resize_levels(maps: Sequence[Tensor], image_size: tuple[int, int]) -> list[Tensor]:
    """Resize raw block maps (the backbone's own stride) to strides 4, 8, 16, 32 of the image."""
    out = []
    for fmap, size in zip(maps, level_sizes(image_size), strict=True):
        if tuple(fmap.shape[-2:]) != size:
            fmap = F.interpolate(fmap, size=size, mode="bilinear", align_corners=False)
        out.append(fmap)
    return out


def level_dims(backbone: nn.Module, indices: Sequence[int], probe_size: int = 64) -> list[int]:
    """Channel width of each level, measured with one tiny forward (CNN stages differ in width)."""
    was_training = backbone.training
    backbone.eval()
    param = next(backbone.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    with torch.no_grad():
        maps = _forward_levels(backbone, torch.zeros(1, 3, probe_size, probe_size, device=device), indices)
    backbone.train(was_training)
    return [int(m.shape[1]) for m in maps]


def _forward_levels(backbone: nn.Module, x: Tensor, indices: Sequence[int]) -> list[Tensor]:
    """Call ``forward_levels`` once with unique indices and map repeats back (shallow models)."""
    unique = sorted(set(indices))
    maps = backbone.forward_levels(x, unique)  # type: ignore[operator]
    by_index = dict(zip(unique, maps, strict=True))
    return [by_index[i] for i in indices]


class SegmentationModel(nn.Module):
    """Encoder + decode head as one module: images float [0, 1] ``[B, 3, H, W]`` in, logits out.

    With ``frozen_encoder`` the encoder stays in eval mode whatever ``train()`` is asked, its
    parameters have ``requires_grad=False`` and its features are computed under ``no_grad``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: SegHead,
        indices: Sequence[int],
        *,
        frozen_encoder: bool = True,
    ) -> None:
        super().__init__()
        if len(indices) != len(STRIDES):
            raise ConfigError(f"need {len(STRIDES)} level indices, got {list(indices)}")
        self.backbone = backbone
        self.head = head
        self.indices = [int(i) for i in indices]
        self.frozen_encoder = frozen_encoder
        if frozen_encoder:
            freeze_module(backbone)

    def train(self, mode: bool = True) -> SegmentationModel:
        super().train(mode)
        if self.frozen_encoder:
            self.backbone.eval()
        return self

    def features(self, images: Tensor) -> list[Tensor]:
        """Four level maps at strides 4-32; detached when the encoder is frozen."""
        size = (int(images.shape[-2]), int(images.shape[-1]))
        if self.frozen_encoder:
            with torch.no_grad():
                maps = _forward_levels(self.backbone, images, self.indices)
            maps = [m.detach() for m in maps]
        else:
            maps = _forward_levels(self.backbone, images, self.indices)
        return resize_levels(maps, size)

    def forward(self, images: Tensor) -> Tensor:
        size = (int(images.shape[-2]), int(images.shape[-1]))
        return self.head(self.features(images), size)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters an optimizer should see (the head only when the encoder is frozen)."""
        return [p for p in self.parameters() if p.requires_grad]


def freeze_module(module: nn.Module) -> None:
    """Eval mode and ``requires_grad=False`` for every parameter of ``module``."""
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)


def assert_frozen(module: nn.Module) -> None:
    """Fail loudly when a module meant to be frozen could still change (the stage handover check)."""
    trainable = [name for name, p in module.named_parameters() if p.requires_grad]
    if trainable:
        raise RuntimeError(f"encoder is not frozen: {len(trainable)} parameters need grad, e.g. {trainable[0]}")
    if module.training:
        raise RuntimeError("encoder is not frozen: it is in training mode")


class SegmentationTask(nn.Module):
    """Trainer task: cross-entropy (ignore 255) of a :class:`SegmentationModel` on a labelled batch."""

    def __init__(self, model: SegmentationModel, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.model = model
        self.ignore_index = ignore_index

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        images, masks = batch["image"], batch["mask"]
        logits = self.model(images)
        ce = segmentation_ce(logits, masks, self.ignore_index)
        return {"loss": ce, "ce": ce.detach()}


def segmentation_ce(logits: Tensor, masks: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Pixel cross-entropy ignoring ``ignore_index``; 0 (not NaN) for a batch with no labelled pixel."""
    masks = masks.long()
    if not bool((masks != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), masks, ignore_index=ignore_index)

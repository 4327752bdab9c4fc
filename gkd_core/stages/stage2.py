"""Stage 2 of GKD: train a segmentation head on a frozen, distilled student (METHOD.md, stage 2).

Decoupling is the paper's largest effect: the task loss never reaches the encoder, so the
representation learned from the teacher in stage 1 is kept intact. The frozen encoder runs in eval
mode under ``no_grad``; four block features spread over the depth are resized to strides 4, 8, 16
and 32 and decoded by a head trained with cross-entropy (ignore index 255).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from gkd_catalog.schedule import steps_for_epochs
from gkd_core.data.photometric import PARAMS_KEY
from gkd_core.engine.batches import BatchSource, StepBatches
from gkd_core.engine.callbacks import Callbacks
from gkd_core.engine.inference import sliding_window_logits
from gkd_core.engine.metrics import ConfusionMatrix, SegMetrics
from gkd_core.engine.optim import adamw_poly, param_groups
from gkd_core.engine.speed import SpeedOptions, adamw_fused, speed_defaults
from gkd_core.engine.trainer import FitResult, autocast_context, fit
from gkd_core.errors import ConfigError
from gkd_core.models.heads import HEADS, SegHead
from gkd_core.models.seg_head import IGNORE_INDEX
from gkd_core.models.seg_head import segmentation_ce as segmentation_ce  # re-exported for the baselines

_logger = logging.getLogger(__name__)

STRIDES = (4, 8, 16, 32)
# Blocks 4, 6, 8, 12 of a 12-block ViT (the paper) are these fractions of the depth.
_DEPTH_FRACTIONS = (1 / 3, 1 / 2, 2 / 3, 1.0)


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
    head_queries: int | None = None  # mask2former only; None: the head's default (100)
    head_layers: int | None = None  # mask2former decoder layers; None: the head's default (9)
    grad_clip: float | None = None  # global grad-norm clip; None: the head's published default (none), 0: off
    scale: tuple[float, float] = (0.5, 2.0)
    flip: bool = True
    photometric: bool = True
    # The paper's protocol (mmseg): short side resized to base_size x a random scale in ``scale`` (GTAV:
    # 512, 0.5-2.0), a crop_size crop retried until no class covers more than cat_max_ratio (0.75) of it.
    # base_size None scales relative to each image's own size; cat_max_ratio 1.0 takes the first crop.
    base_size: int | None = None
    cat_max_ratio: float = 1.0
    epochs: float | None = None  # passes over the source set instead of ``steps`` (see resolved())
    eval_window: int | None = None  # None: crop_size
    eval_stride: int | None = None  # None: two thirds of the window (512 -> 341)
    checkpoint_every: int = 500
    num_workers: int | None = None  # loader workers per rank; None: the cores available / ranks
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
        if self.base_size is not None and self.base_size < 16:
            raise ConfigError(f"stage2.base_size must be at least 16 pixels or None, got {self.base_size}")
        if not 0 < self.cat_max_ratio <= 1:
            raise ConfigError(f"stage2.cat_max_ratio must be in (0, 1], got {self.cat_max_ratio}")
        if self.epochs is not None and not self.epochs > 0:
            raise ConfigError(f"stage2.epochs must be > 0 or None, got {self.epochs}")
        for name in ("head_queries", "head_layers"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"stage2.{name} must be at least 1 (or None for the head's default), got {value}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"stage2.num_workers must be >= 0 or None (one per core), got {self.num_workers}")
        if self.grad_clip is not None and not self.grad_clip >= 0:
            raise ConfigError(f"stage2.grad_clip must be >= 0 (0 turns clipping off) or None, got {self.grad_clip}")

    def resolved(self, num_pairs: int) -> Stage2Config:
        """This config with ``epochs`` turned into optimizer steps over ``num_pairs`` labelled pairs."""
        if self.epochs is None:
            return self
        return replace(self, steps=steps_for_epochs(self.epochs, num_pairs, self.batch_size), epochs=None)

    def head_options(self) -> dict[str, Any]:
        """Head constructor options that are set (None fields are left to the head's defaults)."""
        options = {"num_queries": self.head_queries, "num_layers": self.head_layers}
        return {k: v for k, v in options.items() if v is not None}

    def clip_norm(self) -> float | None:
        """The gradient-norm clip to train with: ``grad_clip``, else the head's published default."""
        if self.grad_clip is not None:
            return self.grad_clip or None
        head = HEADS.get(self.head)
        return head.default_grad_clip if head is not None else None

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

    def raw_levels(self, images: Tensor) -> list[Tensor]:
        """The four block maps at the backbone's own stride; detached when the encoder is frozen."""
        if self.frozen_encoder:
            with torch.no_grad():
                maps = _forward_levels(self.backbone, images, self.indices)
            return [m.detach() for m in maps]
        return _forward_levels(self.backbone, images, self.indices)

    def features(self, images: Tensor) -> list[Tensor]:
        """Four level maps at strides 4-32; detached when the encoder is frozen."""
        return resize_levels(self.raw_levels(images), (int(images.shape[-2]), int(images.shape[-1])))

    def forward_with_levels(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits and the raw block maps they came from (feature-distillation baselines)."""
        size = (int(images.shape[-2]), int(images.shape[-1]))
        raw = self.raw_levels(images)
        return self.head(resize_levels(raw, size), size), raw

    def forward(self, images: Tensor) -> Tensor:
        return self.forward_with_levels(images)[0]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters an optimizer should see (the head only when the encoder is frozen)."""
        return [p for p in self.parameters() if p.requires_grad]


def build_segmentation_model(
    backbone: nn.Module,
    head: str,
    num_classes: int,
    *,
    channels: int = 128,
    frozen_encoder: bool = True,
    head_options: dict[str, Any] | None = None,
) -> SegmentationModel:
    """Backbone + a named head over four levels spread over the depth (the backbone's own choice if it has one).

    ``head_options`` go to the head's constructor (e.g. ``Stage2Config.head_options()``).
    """
    from gkd_core.models.heads import build_head

    default = getattr(backbone, "default_level_indices", None)
    indices = list(default()) if callable(default) else level_indices(int(backbone.num_blocks))  # type: ignore[arg-type]
    probe = int(getattr(backbone, "img_size", 64) or 64)
    dims = level_dims(backbone, indices, probe_size=probe)
    return SegmentationModel(
        backbone,
        build_head(head, dims, num_classes, channels=channels, **(head_options or {})),
        indices,
        frozen_encoder=frozen_encoder,
    )


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
    """Trainer task: the head's own loss (ignore 255) of a :class:`SegmentationModel` on a labelled batch.

    Per-pixel cross-entropy for the dense heads (``{"loss", "ce"}``), the set-prediction loss for
    Mask2Former (``{"loss", "cls", "mask", "dice", "aux"}``); the trainer logs every part.
    """

    def __init__(self, model: SegmentationModel, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.model = model
        self.ignore_index = ignore_index

    def forward(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        images, masks = batch["image"], batch["mask"]
        return self.model.head.loss(self.model.features(images), masks, self.ignore_index)


def optimizer_groups(model: SegmentationModel, cfg: Stage2Config) -> list[dict[str, Any]]:
    """AdamW parameter groups: the head at ``cfg.lr``; a trainable encoder at ``lr * backbone_lr_mult``.

    Besides biases and norms, the head's ``no_weight_decay()`` names (Mask2Former's queries and
    level embeddings, as mmseg) are not decayed.
    """
    skip = model.head.no_weight_decay()
    groups = [dict(g, lr=cfg.lr) for g in param_groups(model.head, cfg.weight_decay, no_decay=skip)]
    if not model.frozen_encoder:
        groups += [dict(g, lr=cfg.lr * cfg.backbone_lr_mult) for g in param_groups(model.backbone, cfg.weight_decay)]
    return groups


def train_transform(cfg: Stage2Config, ignore_index: int = IGNORE_INDEX) -> Any:
    """The paper's segmentation augmentation: random scale, crop, flip, photometric distortion."""
    from gkd_core.data.transforms import SegTrainTransform

    return SegTrainTransform(
        cfg.crop_size,
        cfg.scale,
        cfg.flip,
        cfg.photometric,
        base_size=cfg.base_size,
        ignore_index=ignore_index,
        cat_max_ratio=cfg.cat_max_ratio,
    )


def source_batches(
    dataset: Dataset[Any],
    cfg: Stage2Config,
    seed: int,
    *,
    device: torch.device | str | None = None,
    batch_transform: Callable[[Any], Any] | None = None,
    ranks: int | None = None,
) -> StepBatches:
    """Resumable, seeded batches over an (already augmenting) labelled source dataset.

    ``device`` is where the batches go (CUDA pins memory); ``batch_transform`` runs there on each
    collated batch (the deferred photometric distortion, ``gkd_core.data.photometric.apply_deferred``).
    ``cfg.num_workers`` None gives one worker per core available to this process, shared by ``ranks``.
    """
    size = len(dataset)  # type: ignore[arg-type]
    return StepBatches(
        dataset,
        min(cfg.batch_size, size),
        seed=seed,
        shuffle=True,
        drop_last=True,
        num_workers=cfg.num_workers,
        collate_fn=_collate,
        device=device,
        batch_transform=batch_transform,
        world_size=ranks,
    )


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch = {
        "image": torch.stack([it["image"] for it in items]),
        "mask": torch.stack([it["mask"] for it in items]),
        "name": [it["name"] for it in items],
    }
    if PARAMS_KEY in items[0]:  # deferred photometric rows, applied on the device
        batch[PARAMS_KEY] = torch.stack([it[PARAMS_KEY] for it in items])
    return batch


def train_segmentation(
    task: nn.Module,
    groups: list[dict[str, Any]],
    cfg: Stage2Config,
    batches: BatchSource,
    *,
    stage: str,
    checkpoint_dir: Path | None,
    callbacks: Callbacks | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    seed: int = 0,
    exclude_prefixes: tuple[str, ...] = (),
    config: Any = None,
    speed: SpeedOptions | None = None,
) -> FitResult:
    """Run one segmentation stage (stage 2, a baseline or a reference) with AdamW + poly decay.

    Gradients are clipped as ``cfg.clip_norm()`` says (Mask2Former: global norm 0.01 as published).
    ``speed`` None takes the defaults measured for ``device`` (gkd_core.engine.speed).
    """
    speed = speed if speed is not None else speed_defaults(device)
    optimizer, scheduler = adamw_poly(
        groups, cfg.lr, cfg.weight_decay, steps=cfg.steps, power=cfg.power, fused=adamw_fused(speed, device)
    )
    return fit(
        task,
        optimizer,
        scheduler,
        batches,
        steps=cfg.steps,
        stage=stage,
        checkpoint_dir=checkpoint_dir,
        callbacks=callbacks,
        checkpoint_every=cfg.checkpoint_every,
        grad_clip=cfg.clip_norm(),
        device=device,
        precision=precision,
        seed=seed,
        config=config,
        exclude_prefixes=exclude_prefixes,
        speed=speed,
    )


@torch.no_grad()
def evaluate_segmentation(
    model: nn.Module,
    dataset: Dataset[Any],
    num_classes: int,
    *,
    window: int,
    stride: int,
    device: str | torch.device = "cpu",
    ignore_index: int = IGNORE_INDEX,
    precision: str = "fp32",
    resize: tuple[int, int] | None = None,
) -> SegMetrics:
    """Sliding-window mIoU of ``model`` over every image of ``dataset``, scored against full-resolution labels.

    ``resize`` (w, h) is the paper's test-time scale (mmseg ``Resize(scale, keep_ratio=True)``, e.g.
    Cityscapes 1024x512): each image is resized to fit it, keeping its aspect, and the logits are
    upsampled back to the label's size before scoring.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    cm = ConfusionMatrix(num_classes, ignore_index=ignore_index)
    for i in range(len(dataset)):  # type: ignore[arg-type]
        item = dataset[i]
        image = item["image"].unsqueeze(0).to(device)
        mask = item["mask"].unsqueeze(0).to(device)
        full = (int(image.shape[-2]), int(image.shape[-1]))
        if resize is not None:
            image = F.interpolate(image, size=fit_keep_ratio(full, resize), mode="bilinear", align_corners=False)
        with autocast_context(device, precision):
            logits = sliding_window_logits(model, image, num_classes, window, stride)
        if tuple(logits.shape[-2:]) != full:
            logits = F.interpolate(logits.float(), size=full, mode="bilinear", align_corners=False)
        cm.update(logits.argmax(dim=1), mask)
    model.train(was_training)
    return cm.compute()


def fit_keep_ratio(size: tuple[int, int], scale: tuple[int, int]) -> tuple[int, int]:
    """(h, w) of an image of ``size`` (h, w) rescaled to fit ``scale`` (w, h) with its aspect kept (mmseg).

    As mmseg's ``Resize(keep_ratio=True)``: the factor is min(long edge of scale / long edge of the
    image, short edge of scale / short edge of the image), so 2048x1024 fits 1024x512 at 0.5.
    """
    h, w = size
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return max(1, round(h * factor)), max(1, round(w * factor))

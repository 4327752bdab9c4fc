"""Typed, frozen configs for the backbones and stage 1 of GKD (Lv et al., CVPR 2026, Sec. 3.1).

Configs are plain frozen dataclasses (nanoGPT's ``GPTConfig``): no env vars, no files. Each value is
checked in ``__post_init__`` so a bad job spec fails before any model is built. Other parts of the
library keep their own configs in their own modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from gkd_catalog.schedule import steps_for_epochs
from gkd_core.errors import ConfigError

WEIGHT_SOURCES = ("none", "timm")
MASK_LOSS_ON = ("all", "masked")
TEACHER_PRECISIONS = ("fp32", "bf16")
LOSS_TERMS = ("cls", "feat", "mask")


@dataclass(frozen=True)
class BackboneConfig:
    """Which timm model to build and where its weights come from.

    Attributes:
        model: a timm model name (``vit_small_patch14_dinov2``, ``deit_small_patch16_224``, ``resnet50``...).
        weights: ``"none"`` (random init), ``"timm"`` (timm's pretrained hub weights; needs network)
            or a path to a local ``.safetensors`` / ``.pt`` / ``.pth`` file.
        img_size: input resolution the model is built for (ViT position embeddings are sized to it).
        overrides: extra keyword arguments for ``timm.create_model``, e.g. ``depth``, ``embed_dim``,
            ``num_heads`` for tiny test models.
    """

    model: str
    weights: str = "none"
    img_size: int = 224
    overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.model or not isinstance(self.model, str):
            raise ConfigError(f"BackboneConfig.model must be a timm model name, got {self.model!r}")
        if not isinstance(self.weights, str) or not self.weights:
            raise ConfigError(
                f"BackboneConfig.weights must be 'none', 'timm' or a file path, got {self.weights!r}"
            )
        if self.img_size < 8:
            raise ConfigError(f"BackboneConfig.img_size must be >= 8 pixels, got {self.img_size}")
        for reserved in ("pretrained", "num_classes", "pretrained_cfg_overlay"):
            if reserved in self.overrides:
                raise ConfigError(
                    f"BackboneConfig.overrides may not set {reserved!r}; use BackboneConfig.weights instead"
                )

    @property
    def weights_is_file(self) -> bool:
        """True when ``weights`` names a local file rather than a source keyword."""
        return self.weights not in WEIGHT_SOURCES


@dataclass(frozen=True)
class Stage1Config:
    """Stage 1 (label-free representation distillation) of one step (1a proxy or 1b source).

    Attributes:
        steps: optimizer steps for this step of stage 1 (ignored when ``epochs`` is set).
        epochs: passes over this step's image set instead of ``steps``; :meth:`resolved` turns them into
            steps once the set's size is known (1a in the paper: 100 epochs of ImageNet at batch 512).
        batch_size: images per step.
        lr: peak learning rate; ``None`` means the paper's rule 5e-4 * batch_size / 512.
        weight_decay: AdamW weight decay.
        min_lr: the cosine schedule ends here (no warmup).
        image_size: training resolution of this step (the student is rebuilt for it, see
            ``Backbone.set_geometry``; 224 for 1a and 512 for 1b in the paper).
        student_patch_size: the student's patch size in this step (``None``: its own). The paper runs
            1a with the patch-16 student's kernel resized to 14, so a patch-14 teacher runs natively.
        mask_probability: fraction of each batch (the first images) that gets a masked view.
        mask_ratio: fraction of patch positions replaced by the mask token in a masked image.
        loss_weights: weights of ``cls``, ``feat``, ``mask`` (all 1 in the paper).
        head: ``"qsd"`` (GKD) or ``"linear"`` (Proteus: LayerNorm + Linear heads).
        mask_loss_on: ``"all"`` positions (published code) or only ``"masked"`` ones (Proteus).
        teacher_precision: ``"bf16"`` runs the frozen teacher under bf16 autocast where supported.
        checkpoint_every: save a checkpoint every this many steps (0: only at the end).
    """

    steps: int = 1000
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float = 0.05
    min_lr: float = 1e-5
    image_size: int = 224
    mask_probability: float = 0.5
    mask_ratio: float = 0.5
    loss_weights: dict[str, float] = field(default_factory=lambda: {"cls": 1.0, "feat": 1.0, "mask": 1.0})
    head: str = "qsd"
    mask_loss_on: str = "all"
    teacher_precision: str = "bf16"
    checkpoint_every: int = 500
    epochs: float | None = None
    student_patch_size: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"Stage1Config.steps must be >= 1, got {self.steps}")
        if self.epochs is not None and not self.epochs > 0:
            raise ConfigError(f"Stage1Config.epochs must be > 0 or None, got {self.epochs}")
        if self.student_patch_size is not None and self.student_patch_size < 1:
            raise ConfigError(f"Stage1Config.student_patch_size must be >= 1 or None, got {self.student_patch_size}")
        if self.batch_size < 1:
            raise ConfigError(f"Stage1Config.batch_size must be >= 1, got {self.batch_size}")
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"Stage1Config.lr must be > 0 or None (scaled rule), got {self.lr}")
        if self.weight_decay < 0 or self.min_lr < 0:
            raise ConfigError("Stage1Config.weight_decay and min_lr must be >= 0")
        if not 0.0 <= self.mask_probability <= 1.0:
            raise ConfigError(f"Stage1Config.mask_probability must be in [0, 1], got {self.mask_probability}")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"Stage1Config.mask_ratio must be in [0, 1), got {self.mask_ratio}")
        from gkd_core.losses.qsd import TOKEN_HEADS  # the one table of stage-1 heads (imports torch)

        if self.head not in TOKEN_HEADS:
            raise ConfigError(f"Stage1Config.head must be one of {tuple(TOKEN_HEADS)}, got {self.head!r}")
        if self.mask_loss_on not in MASK_LOSS_ON:
            raise ConfigError(f"Stage1Config.mask_loss_on must be one of {MASK_LOSS_ON}, got {self.mask_loss_on!r}")
        if self.teacher_precision not in TEACHER_PRECISIONS:
            raise ConfigError(
                f"Stage1Config.teacher_precision must be one of {TEACHER_PRECISIONS}, got {self.teacher_precision!r}"
            )
        unknown = set(self.loss_weights) - set(LOSS_TERMS)
        if unknown:
            raise ConfigError(f"Stage1Config.loss_weights has unknown terms {sorted(unknown)}; valid: {LOSS_TERMS}")
        if any(w < 0 for w in self.loss_weights.values()):
            raise ConfigError(f"Stage1Config.loss_weights must be >= 0, got {self.loss_weights}")
        if self.checkpoint_every < 0:
            raise ConfigError(f"Stage1Config.checkpoint_every must be >= 0, got {self.checkpoint_every}")

    def resolved(self, num_images: int) -> Stage1Config:
        """This config with ``epochs`` turned into optimizer steps for a set of ``num_images`` images."""
        if self.epochs is None:
            return self
        if num_images < 1:
            raise ConfigError("cannot count epochs over an empty image set")
        return replace(self, steps=steps_for_epochs(self.epochs, num_images, self.batch_size), epochs=None)

    @property
    def effective_lr(self) -> float:
        """Peak learning rate: ``lr`` if given, else the paper's 5e-4 * batch / 512."""
        return self.lr if self.lr is not None else 5e-4 * self.batch_size / 512

    def weight(self, term: str) -> float:
        """Weight of one loss term (missing terms weigh 1, as in the paper)."""
        return float(self.loss_weights.get(term, 1.0))


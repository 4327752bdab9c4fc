"""The Mask2Former decode head on four frozen feature levels (METHOD.md, stage 2; the paper's head).

Pixel decoder (deformable attention over strides 8-32, FPN to stride 4) -> masked-attention
decoder -> per-query class and mask. Semantic output (mmseg's ``Mask2FormerHead.predict``):
``einsum(softmax(class)[..., :-1], sigmoid(mask))`` summed over queries at stride 4, upsampled
bilinearly to the requested size by :class:`SegHead`. These are scores in [0, num_queries],
not log-probabilities: argmax, sliding-window averaging and export treat them like any logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from gkd_core.errors import ConfigError
from gkd_core.models.mask2former.criterion import SetCriterion, semantic_targets
from gkd_core.models.mask2former.pixel_decoder import PixelDecoder
from gkd_core.models.mask2former.transformer_decoder import MaskedTransformerDecoder
from gkd_core.models.seg_head import IGNORE_INDEX, SegHead, check_levels


@dataclass(frozen=True)
class Mask2FormerOptions:
    """Head options; defaults are the mmseg Mask2Former config (METHOD.md, stage 2).

    FFN widths scale with the head width as published (decoder 8x, pixel-decoder encoder 4x:
    2048 and 1024 at 256 channels).
    """

    num_queries: int = 100
    num_layers: int = 9
    encoder_layers: int = 6
    num_heads: int = 8
    deform_points: int = 4
    num_points: int = 12544
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1

    def __post_init__(self) -> None:
        for name in ("num_queries", "num_layers", "num_heads", "deform_points", "num_points"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"mask2former {name} must be at least 1, got {getattr(self, name)}")
        if self.encoder_layers < 0:
            raise ConfigError(f"mask2former encoder_layers must be >= 0, got {self.encoder_layers}")
        if self.oversample_ratio < 1.0:
            raise ConfigError(f"mask2former oversample_ratio must be >= 1, got {self.oversample_ratio}")
        if not 0.0 <= self.importance_sample_ratio <= 1.0:
            raise ConfigError(
                f"mask2former importance_sample_ratio must lie in [0, 1], got {self.importance_sample_ratio}"
            )


class Mask2FormerHead(SegHead):
    """Mask2Former over the strides 4, 8, 16, 32 feature maps; see the module docstring.

    Args:
        in_dims: widths of the four input levels (finest first).
        num_classes: semantic classes K.
        channels: width of the pixel decoder, queries and mask embeddings (the paper: 256).
        **options: fields of :class:`Mask2FormerOptions` (queries, layers, loss settings).
    """

    in_dims_key: ClassVar[str] = "pixel_decoder.input_proj.{}.0.weight"
    # GKD's published stage-2 configs for frozen students (task_learning/configs/frozen_vfms/deit_vit-S_
    # mask2former.py and its siblings) set no clip_grad; mmseg's stock Mask2Former configs use max_norm
    # 0.01. We follow GKD's: no clipping unless Stage2Config.grad_clip asks for it.
    default_grad_clip: ClassVar[float | None] = None
    output_kind: ClassVar[str] = (
        "a score per class, softmax(class) x sigmoid(mask) summed over the queries (take the argmax)"
    )

    def __init__(self, in_dims: Sequence[int], num_classes: int, channels: int = 256, **options: Any) -> None:
        super().__init__()
        self.in_dims = tuple(int(d) for d in in_dims)
        self.num_classes = int(num_classes)
        try:
            self.opts = Mask2FormerOptions(**options)
        except TypeError as exc:
            valid = sorted(Mask2FormerOptions.__dataclass_fields__)
            raise ConfigError(f"bad mask2former option ({exc}); valid options: {valid}") from exc
        o = self.opts
        if channels % o.num_heads or channels % 2:
            raise ConfigError(
                f"mask2former channels ({channels}) must be even and divisible by num_heads ({o.num_heads})"
            )
        self.pixel_decoder = PixelDecoder(
            self.in_dims,
            channels,
            encoder_layers=o.encoder_layers,
            num_heads=o.num_heads,
            num_points=o.deform_points,
            ffn_dim=4 * channels,
        )
        self.decoder = MaskedTransformerDecoder(
            channels,
            self.num_classes,
            num_queries=o.num_queries,
            num_layers=o.num_layers,
            num_heads=o.num_heads,
            ffn_dim=8 * channels,
        )
        self.criterion = SetCriterion(
            self.num_classes,
            class_weight=o.class_weight,
            mask_weight=o.mask_weight,
            dice_weight=o.dice_weight,
            no_object_weight=o.no_object_weight,
            num_points=o.num_points,
            oversample=o.oversample_ratio,
            importance=o.importance_sample_ratio,
        )

    def predict_sets(self, features: Sequence[Tensor], *, all_layers: bool = True) -> tuple[list[Tensor], list[Tensor]]:
        """Class logits ``[B, Q, K+1]`` and stride-4 mask logits ``[B, Q, h, w]`` of every prediction set."""
        check_levels(features, len(self.in_dims))
        mask_features, memories = self.pixel_decoder(features)
        return self.decoder(memories, mask_features, all_layers=all_layers)

    def decode(self, features: Sequence[Tensor]) -> Tensor:
        logits, masks = self.predict_sets(features, all_layers=False)
        probs = logits[-1].softmax(-1)[..., :-1]
        return torch.einsum("bqc,bqhw->bchw", probs, masks[-1].sigmoid())

    def loss(self, features: Sequence[Tensor], masks: Tensor, ignore_index: int = IGNORE_INDEX) -> dict[str, Tensor]:
        """Set-prediction loss over every decoder layer: ``{"loss", "cls", "mask", "dice", "aux"}``.

        ``cls``/``mask``/``dice`` are the last layer's weighted terms, ``aux`` the earlier layers' sum.
        """
        all_logits, all_masks = self.predict_sets(features)
        targets = semantic_targets(masks, self.num_classes, ignore_index)
        return self.criterion(all_logits, all_masks, targets)

    def loss_and_logits(
        self, features: Sequence[Tensor], masks: Tensor, ignore_index: int = IGNORE_INDEX
    ) -> tuple[dict[str, Tensor], Tensor]:
        """The set loss and the last layer's semantic map (softmax(class) x sigmoid(mask)) at the mask size."""
        all_logits, all_masks = self.predict_sets(features)
        loss = self.criterion(all_logits, all_masks, semantic_targets(masks, self.num_classes, ignore_index))
        semantic = torch.einsum("bqc,bqhw->bchw", all_logits[-1].softmax(-1)[..., :-1], all_masks[-1].sigmoid())
        size = (int(masks.shape[-2]), int(masks.shape[-1]))
        return loss, F.interpolate(semantic, size=size, mode="bilinear", align_corners=False)

    def options(self) -> dict[str, Any]:
        return asdict(self.opts)

    def no_weight_decay(self) -> set[str]:
        """Queries and level embeddings (mmseg: decay_mult 0 for query_feat, query_embed, level_embed)."""
        return {
            "decoder.query_feat.weight",
            "decoder.query_pos.weight",
            "decoder.level_embed.weight",
            "pixel_decoder.level_embed.weight",
        }

"""The decode-head interface shared by every stage-2 head (METHOD.md, stage 2).

A head takes four feature maps at strides 4, 8, 16 and 32 (finest first) and returns class logits
``[B, num_classes, H, W]``. Training goes through :meth:`SegHead.loss`, so a head decides its own
objective: per-pixel cross-entropy for the dense heads (linear, FPN), a set-prediction loss for
Mask2Former. Evaluation, sliding windows and export only ever see ``forward``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

IGNORE_INDEX = 255


def check_levels(features: Sequence[Tensor], expected: int) -> None:
    if len(features) != expected:
        raise ValueError(f"head expects {expected} feature maps (strides 4, 8, 16, 32), got {len(features)}")


def upsample_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def segmentation_ce(logits: Tensor, masks: Tensor, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """Pixel cross-entropy ignoring ``ignore_index``; 0 (not NaN) for a batch with no labelled pixel."""
    masks = masks.long()
    if not bool((masks != ignore_index).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), masks, ignore_index=ignore_index)


class SegHead(nn.Module):
    """Common interface: ``forward(features, out_size) -> logits [B, num_classes, *out_size]``.

    Class attributes a head may override:
        in_dims_key: state-dict key pattern (``{}`` = level) of a per-level input layer whose
            weight has the input width at dim 1; the exporter reads the widths back from it.
        default_grad_clip: the global gradient-norm clip the head was published with (None: none).
        output_kind: what ``forward`` returns, in words (the model card says it).
    """

    in_dims: tuple[int, ...]
    num_classes: int
    in_dims_key: ClassVar[str] = "proj.{}.weight"
    default_grad_clip: ClassVar[float | None] = None
    output_kind: ClassVar[str] = "logits per class"

    def decode(self, features: Sequence[Tensor]) -> Tensor:
        """Logits at the finest feature stride (stride 4)."""
        raise NotImplementedError

    def forward(self, features: Sequence[Tensor], out_size: tuple[int, int] | None = None) -> Tensor:
        logits = self.decode(features)
        if out_size is not None:
            logits = upsample_to(logits, (int(out_size[0]), int(out_size[1])))
        return logits

    def loss(self, features: Sequence[Tensor], masks: Tensor, ignore_index: int = IGNORE_INDEX) -> dict[str, Tensor]:
        """Training loss on semantic masks ``[B, H, W]``: ``{"loss": total, <parts>...}``.

        The default is per-pixel cross-entropy of the logits at the mask size (``"ce"``).
        """
        size = (int(masks.shape[-2]), int(masks.shape[-1]))
        ce = segmentation_ce(self(features, size), masks, ignore_index)
        return {"loss": ce, "ce": ce.detach()}

    def loss_and_logits(
        self, features: Sequence[Tensor], masks: Tensor, ignore_index: int = IGNORE_INDEX
    ) -> tuple[dict[str, Tensor], Tensor]:
        """The training loss and the semantic logits at the mask size, from one forward of the head.

        The single-stage baselines (KD, CWD) distil on these logits while they train on the loss.
        """
        size = (int(masks.shape[-2]), int(masks.shape[-1]))
        logits = self(features, size)
        ce = segmentation_ce(logits, masks, ignore_index)
        return {"loss": ce, "ce": ce.detach()}, logits

    def options(self) -> dict[str, Any]:
        """Constructor options beyond widths, classes and channels (exported so a file rebuilds the head)."""
        return {}

    def no_weight_decay(self) -> set[str]:
        """Names of parameters (relative to the head) that AdamW must not decay besides biases and norms."""
        return set()

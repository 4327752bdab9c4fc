"""Sliding-window and whole-image inference for segmentation models.

METHOD.md, stage 2: evaluation uses sliding-window inference (paper: 512 window, stride 341).
Windows cover the image on a regular grid whose last row/column is shifted back to end at the
border; overlapping logits are averaged. An image smaller than the window is zero-padded at the
bottom/right and the padding is cropped away again. ``model_fn`` may return logits at a lower
resolution (e.g. stride 4); they are resized bilinearly to the window size.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

ModelFn = Callable[[torch.Tensor], torch.Tensor]


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
    if pair[0] < 1 or pair[1] < 1:
        raise ValueError(f"{name} must be positive, got {value}")
    return pair


def _starts(size: int, window: int, stride: int) -> list[int]:
    if size <= window:
        return [0]
    count = -(-(size - window) // stride) + 1
    return [min(i * stride, size - window) for i in range(count)]


def _logits(model_fn: ModelFn, x: torch.Tensor, num_classes: int, size: tuple[int, int]) -> torch.Tensor:
    out = model_fn(x)
    if out.ndim != 4 or out.shape[0] != x.shape[0] or out.shape[1] != num_classes:
        raise ValueError(
            f"model_fn must return B x {num_classes} x h x w logits for a {tuple(x.shape)} input, "
            f"got {tuple(out.shape)}"
        )
    if tuple(out.shape[-2:]) != size:
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=False)
    return out


@torch.no_grad()
def whole_image_logits(model_fn: ModelFn, image: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Run ``model_fn`` on the full B x C x H x W image; logits resized to H x W (float32)."""
    if image.ndim != 4:
        raise ValueError(f"image must be B x C x H x W, got shape {tuple(image.shape)}")
    return _logits(model_fn, image, num_classes, (image.shape[-2], image.shape[-1])).float()


@torch.no_grad()
def sliding_window_logits(
    model_fn: ModelFn,
    image: torch.Tensor,
    num_classes: int,
    window: int | tuple[int, int],
    stride: int | tuple[int, int],
) -> torch.Tensor:
    """Average ``model_fn`` logits over overlapping windows of a B x C x H x W image.

    Args:
        model_fn: maps B x C x wh x ww crops to B x num_classes x h x w logits.
        image: the batch to segment.
        num_classes: channels of the returned logits.
        window: crop size (int or (h, w)).
        stride: step between crops (int or (h, w)); must not exceed the window (no gaps).

    Returns:
        float32 logits B x num_classes x H x W.
    """
    if image.ndim != 4:
        raise ValueError(f"image must be B x C x H x W, got shape {tuple(image.shape)}")
    wh, ww = _pair(window, "window")
    sh, sw = _pair(stride, "stride")
    if sh > wh or sw > ww:
        raise ValueError(f"stride {stride} exceeds window {window}: some pixels would never be predicted")
    b, _, h, w = image.shape
    ph, pw = max(wh - h, 0), max(ww - w, 0)
    padded = F.pad(image, (0, pw, 0, ph)) if ph or pw else image
    H, W = padded.shape[-2:]
    total = torch.zeros(b, num_classes, H, W, dtype=torch.float32, device=image.device)
    count = torch.zeros(1, 1, H, W, dtype=torch.float32, device=image.device)
    for top in _starts(H, wh, sh):
        for left in _starts(W, ww, sw):
            crop = padded[:, :, top : top + wh, left : left + ww]
            total[:, :, top : top + wh, left : left + ww] += _logits(model_fn, crop, num_classes, (wh, ww)).float()
            count[:, :, top : top + wh, left : left + ww] += 1
    return (total / count)[:, :, :h, :w]


def predict_logits(
    model_fn: ModelFn,
    image: torch.Tensor,
    num_classes: int,
    *,
    mode: str = "slide",
    window: int | tuple[int, int] = 512,
    stride: int | tuple[int, int] = 341,
) -> torch.Tensor:
    """Dispatch to ``sliding_window_logits`` (mode "slide") or ``whole_image_logits`` ("whole")."""
    if mode == "slide":
        return sliding_window_logits(model_fn, image, num_classes, window, stride)
    if mode == "whole":
        return whole_image_logits(model_fn, image, num_classes)
    raise ValueError(f"inference mode must be 'slide' or 'whole', got {mode!r}")

"""mmseg's photometric distortion (METHOD.md, stage 2), split into a draw and an apply so it can run on the GPU.

``draw_photometric`` consumes the random stream exactly as the single-image distortion always has and
returns the draws as a parameter row; ``apply_photometric`` applies rows to a batch of images with
elementwise ops only. ``photometric_distortion(image)`` is the two in sequence on a batch of one, so
the CPU path and the deferred path (draw in the loader worker, apply after the batch is on the device)
run the same arithmetic: on CPU tensors they are bit-identical (tests/gkd_core/data/test_photometric.py).

Deferring it: ``DeferredPhotometric`` wraps a dataset whose transform leaves photometric distortion out,
drawing each item's row right after its transform (same stream position as in-transform), and
``apply_deferred`` is the batch transform that applies and removes the rows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from gkd_core.data._color import hsv_to_rgb, rgb_to_hsv
from gkd_core.data._random import chance, uniform

PARAMS_KEY = "photometric"
# Row layout: brightness delta, contrast first (0/1), contrast factor, saturation on (0/1), factor, hue on, shift.
NUM_PARAMS = 7


def draw_photometric(generator: torch.Generator | None = None) -> torch.Tensor:
    """One image's distortion: brightness +/-32, contrast and saturation 0.5-1.5, hue +/-18 deg (float64 row).

    Each part applies with probability 0.5; contrast comes either first or last, at random. The draws
    happen in mmseg's order (a part's value only when it applies), as the single-image version always drew.
    """
    brightness = uniform(generator, -32.0, 32.0) / 255.0 if chance(generator, 0.5) else 0.0
    contrast_first = chance(generator, 0.5)
    contrast = 1.0
    if contrast_first and chance(generator, 0.5):
        contrast = uniform(generator, 0.5, 1.5)
    do_sat, do_hue = chance(generator, 0.5), chance(generator, 0.5)
    saturation = uniform(generator, 0.5, 1.5) if do_sat else 1.0
    hue = uniform(generator, -18.0, 18.0) / 360.0 if do_hue else 0.0
    if not contrast_first and chance(generator, 0.5):
        contrast = uniform(generator, 0.5, 1.5)
    row = [brightness, float(contrast_first), contrast, float(do_sat), saturation, float(do_hue), hue]
    return torch.tensor(row, dtype=torch.float64)


def apply_photometric(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Apply rows ``params`` [N, 7] to ``images`` [N, 3, H, W] in [0, 1], on whatever device they share.

    A part that does not apply is an exact identity (adding 0.0, multiplying by 1.0, or ``where``), so
    every image gets the arithmetic its own single-image call would do.
    """
    p = params.to(device=images.device, dtype=images.dtype)
    col = [p[:, k].view(-1, 1, 1) for k in range(NUM_PARAMS)]
    first = col[1].bool()
    img = images + col[0][:, None]
    img = (img * torch.where(first, col[2], torch.ones_like(col[2]))[:, None]).clamp(0.0, 1.0)
    do_sat, do_hue = col[3].bool(), col[5].bool()
    # On CPU (the worker's single image) skip the HSV round trip when neither part applies; on a
    # device, ``where`` keeps the batch free of host syncs.
    if images.device.type != "cpu" or bool((do_sat | do_hue).any()):
        hsv = rgb_to_hsv(img)
        h, s, v = hsv.unbind(-3)
        s = torch.where(do_sat, (s * col[4]).clamp(0.0, 1.0), s)
        h = torch.where(do_hue, (h + col[6]) % 1.0, h)
        converted = hsv_to_rgb(torch.stack([h, s, v], dim=-3))
        img = torch.where((do_sat | do_hue)[:, None], converted, img)
    img = img * torch.where(first, torch.ones_like(col[2]), col[2])[:, None]
    return img.clamp(0.0, 1.0)


def photometric_distortion(image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """mmseg-style photometric distortion of one 3xHxW image (see ``draw_photometric``)."""
    return apply_photometric(image[None], draw_photometric(generator)[None])[0]


class DeferredPhotometric(Dataset[dict[str, Any]]):
    """Items of ``dataset`` (whose transform skips photometric distortion) with their drawn row attached.

    The row is drawn right after the item's transform from the same (per-sample seeded) global stream,
    where the in-transform distortion would have drawn it, so deferring changes no random draw.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        item[PARAMS_KEY] = draw_photometric()
        return item


def apply_deferred(batch: dict[str, Any]) -> dict[str, Any]:
    """Batch transform: apply the collated rows to ``batch["image"]`` where it lies; drop the rows."""
    out = {k: v for k, v in batch.items() if k != PARAMS_KEY}
    out["image"] = apply_photometric(batch["image"], batch[PARAMS_KEY])
    return out

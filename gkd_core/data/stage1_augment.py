"""Stage-1 augmentation through timm's own implementations (METHOD.md, stage 1; the paper uses DeiT's recipe).

The paper's 1a/1b augmentation is DeiT's: random resized crop (0.08-1), flip, RandAugment
``rand-m9-mstd0.5-inc1`` and random erasing with probability 0.25 (pixel mode). RandAugment and
random erasing come from timm (``timm.data.rand_augment_transform`` and ``timm.data.RandomErasing``),
not a re-implementation, so magnitude noise, the increasing-severity ops, Invert/SolarizeAdd and
posterize bits are exactly timm's. timm draws from the global RNGs, which the loader
(``gkd_core.engine.batches``) seeds per sample slot in an isolated scope, so a batch stays a pure
function of (seed, epoch, position); a caller that passes its own generator gets the same isolation.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from PIL import Image

from gkd_core.engine.seeding import isolated_rng

DEFAULT_RANDAUGMENT = "rand-m9-mstd0.5-inc1"
MAGNITUDE_CEILING = 9.99
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def draw_seed(generator: torch.Generator | None) -> int | None:
    """One seed for an image's timm ops from the caller's generator (None: leave the global RNGs as they are)."""
    if generator is None:
        return None
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())


class TimmImageAugment:
    """timm's RandAugment on the image, then timm's random erasing in normalised space.

    Args:
        size: the crop side in pixels (RandAugment translates by up to 0.45 of it, as timm's factory).
        randaugment: a timm RandAugment config string, or None to skip it.
        erasing: random erasing probability (pixel mode: N(0, 1) noise in ImageNet-normalised space,
            as timm applies it after ``Normalize``).
    """

    def __init__(self, size: int, randaugment: str | None = DEFAULT_RANDAUGMENT, erasing: float = 0.25) -> None:
        from timm.data import rand_augment_transform
        from timm.data.random_erasing import RandomErasing

        hparams: dict[str, Any] = {
            "translate_const": int(size * 0.45),
            "img_mean": tuple(min(255, round(255 * m)) for m in IMAGENET_MEAN),
            # mstd0.5 noise can push a magnitude to timm's ceiling of 10, where PosterizeIncreasing keeps 0 bits
            # and Pillow >= 11 raises; a ceiling just under 10 keeps 1 bit and leaves every other op as it was.
            "magnitude_max": MAGNITUDE_CEILING,
        }
        self.randaugment = rand_augment_transform(randaugment, hparams) if randaugment else None
        self.erasing = RandomErasing(probability=erasing, mode="pixel", device="cpu") if erasing > 0 else None
        self._mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self._std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a float [0, 1] image C x H x W; returns the same layout (values may leave [0, 1] where erased)."""
        seed = draw_seed(generator)
        with isolated_rng(seed) if seed is not None else nullcontext():
            if self.randaugment is not None:
                image = _from_pil(self.randaugment(_to_pil(image)))
            if self.erasing is not None:
                # Channel-planar memory: the broadcast arithmetic runs about 3x faster than on the
                # pixel-interleaved layout PIL hands back (same values: the ops are elementwise).
                image = image.contiguous()
                normed = (image - self._mean) / self._std
                image = self.erasing(normed) * self._std + self._mean
        return image


def _to_pil(image: torch.Tensor) -> Image.Image:
    array = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array)


def _from_pil(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0

"""RandAugment (Cubuk et al., 2020) at a fixed magnitude, written on PIL images.

Stage 1 of GKD augments with RandAugment m9 (METHOD.md, stage 1 table). Magnitudes follow the
usual 0..10 scale: m=9 means rotations up to 27 degrees, shears up to 0.27, translations up to
40% of the side, enhancement factors 1 +/- 0.81, posterize to 4 bits, solarize above 26.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageOps

from gkd_core.data._random import chance, randint

_FILL = (128, 128, 128)
_MAX_LEVEL = 10.0


def _signed(value: float, gen: torch.Generator | None) -> float:
    return -value if chance(gen, 0.5) else value


def _affine(img: Image.Image, matrix: tuple[float, ...]) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=Image.Resampling.BILINEAR, fillcolor=_FILL)


def _identity(img: Image.Image, m: float, gen: torch.Generator | None) -> Image.Image:
    return img


def _autocontrast(img: Image.Image, m: float, gen: torch.Generator | None) -> Image.Image:
    return ImageOps.autocontrast(img)


def _equalize(img: Image.Image, m: float, gen: torch.Generator | None) -> Image.Image:
    return ImageOps.equalize(img)


def _rotate(img: Image.Image, m: float, gen: torch.Generator | None) -> Image.Image:
    return img.rotate(_signed(30.0 * m / _MAX_LEVEL, gen), resample=Image.Resampling.BILINEAR, fillcolor=_FILL)


def _shear_x(img: Image.Image, m: float, gen: torch.Generator | None) -> Image.Image:
    return _affine(img, (1, _signed(0.3 * m / _MAX_LEVEL, gen), 0, 0, 1, 0))


def _shear_y(img: Image.Image, m: float, gen: torch.Generator | None) -> Image.Image:
    return _affine(img, (1, 0, 0, _signed(0.3 * m / _MAX_LEVEL, gen), 1, 0))


def _translate_x(img: Image.Image, m: float, gen: torch.Generator | None) -> Image.Image:
    return _affine(img, (1, 0, _signed(0.45 * m / _MAX_LEVEL * img.size[0], gen), 0, 1, 0))


def _translate_y(img: Image.Image, m: float, gen: torch.Generator | None) -> Image.Image:
    return _affine(img, (1, 0, 0, 0, 1, _signed(0.45 * m / _MAX_LEVEL * img.size[1], gen)))


def _enhancer(kind: Callable[[Image.Image], ImageEnhance._Enhance]) -> Callable[..., Image.Image]:
    def op(img: Image.Image, m: float, gen: torch.Generator | None) -> Image.Image:
        return kind(img).enhance(max(0.05, 1.0 + _signed(0.9 * m / _MAX_LEVEL, gen)))

    return op


def _posterize(img: Image.Image, m: float, gen: torch.Generator | None) -> Image.Image:
    return ImageOps.posterize(img, max(1, 8 - round(4 * m / _MAX_LEVEL)))


def _solarize(img: Image.Image, m: float, gen: torch.Generator | None) -> Image.Image:
    return ImageOps.solarize(img, threshold=int(256 - 256 * m / _MAX_LEVEL))


OPS: dict[str, Callable[[Image.Image, float, torch.Generator | None], Image.Image]] = {
    "identity": _identity,
    "autocontrast": _autocontrast,
    "equalize": _equalize,
    "rotate": _rotate,
    "solarize": _solarize,
    "color": _enhancer(ImageEnhance.Color),
    "posterize": _posterize,
    "contrast": _enhancer(ImageEnhance.Contrast),
    "brightness": _enhancer(ImageEnhance.Brightness),
    "sharpness": _enhancer(ImageEnhance.Sharpness),
    "shear_x": _shear_x,
    "shear_y": _shear_y,
    "translate_x": _translate_x,
    "translate_y": _translate_y,
}


class RandAugment:
    """Apply ``num_ops`` operations drawn uniformly from ``OPS`` at magnitude ``magnitude`` (0..10)."""

    def __init__(self, num_ops: int = 2, magnitude: float = 9.0) -> None:
        if not 0 <= magnitude <= _MAX_LEVEL:
            raise ValueError(f"RandAugment magnitude must be in 0..10, got {magnitude}")
        self.num_ops = num_ops
        self.magnitude = magnitude
        self._names = list(OPS)

    def __call__(self, img: Image.Image, generator: torch.Generator | None = None) -> Image.Image:
        for _ in range(self.num_ops):
            name = self._names[randint(generator, 0, len(self._names) - 1)]
            img = OPS[name](img, self.magnitude, generator)
        return img

    def apply_tensor(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Same on a float [0, 1] 3xHxW tensor (via an 8-bit PIL image)."""
        arr = (image.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
        out = self(Image.fromarray(arr), generator)
        return torch.from_numpy(np.asarray(out, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0

"""Joint image+mask transforms for stage 2 and image-only augmentation for stage 1 (METHOD.md).

Images are float [0, 1] 3xHxW tensors, masks int64 HxW. Masks are only ever resized with
nearest-neighbour, so no transform can invent a label value. Each transform takes an optional
``generator``; without one it draws from torch's global RNG (seeded per worker by DataLoader).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gkd_core.data._random import chance, randint, uniform
from gkd_core.data.photometric import photometric_distortion
from gkd_core.data.stage1_augment import DEFAULT_RANDAUGMENT, TimmImageAugment


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def unit_float(image: torch.Tensor) -> torch.Tensor:
    """A uint8 3xHxW image (or a window of one) as float [0, 1]; float images pass through.

    Converted in HxWxC memory order, as the decoder hands images over, so a window converted here is
    bit for bit the same window of the whole image converted first: the random-crop transforms take
    uint8 images (``takes_uint8``) and convert only the pixels they keep.
    """
    if image.dtype != torch.uint8:
        return image
    return image.permute(1, 2, 0).float().div_(255.0).permute(2, 0, 1)


def resize_image(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of a 3xHxW image to (h, w)."""
    if tuple(image.shape[-2:]) == size:
        return image
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    out = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=shrink)[0]
    return out.clamp_(0.0, 1.0)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of an HxW integer mask (values are copied, never blended)."""
    if tuple(mask.shape[-2:]) == size:
        return mask
    return F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")[0, 0].to(mask.dtype)


def _source_window(start: int, length: int, scale: float, src_len: int) -> tuple[int, int, int, int]:
    """Source range [s0, s1) covering scaled pixels [start, start + length), its scaled size, and the offset."""
    s0 = max(0, math.floor(start / scale) - 1)
    s1 = min(src_len, math.ceil((start + length) / scale) + 1)
    off = max(0, round(start - s0 * scale))
    out_len = max(round((s1 - s0) * scale), off + length)
    return s0, s1, out_len, off


class SegTrainTransform:
    """Random scale, pad, crop, horizontal flip and photometric distortion, applied jointly.

    Args:
        crop: output (h, w) or side length; smaller images are padded (image 0, mask ``ignore_index``).
        scale: range of the random resize factor (relative to ``base_size`` if given, else to the image).
        flip: horizontal flip with probability 0.5.
        photometric: apply ``photometric_distortion`` to the image.
        base_size: if set, the short side is first resized to ``base_size * factor``.
        ignore_index: padding value for masks.
        cat_max_ratio: mmseg's RandomCrop rule: up to 10 crop positions are tried until no single class
            covers more than this share of the crop's labelled pixels (1.0: the first position).
    """

    # uint8 images are converted window by window (see unit_float); masks may be any integer dtype.
    takes_uint8 = True

    def __init__(
        self,
        crop: int | tuple[int, int],
        scale: tuple[float, float] = (0.5, 2.0),
        flip: bool = True,
        photometric: bool = True,
        base_size: int | None = None,
        ignore_index: int = 255,
        cat_max_ratio: float = 1.0,
    ) -> None:
        if scale[0] <= 0 or scale[1] < scale[0]:
            raise ValueError(f"scale must be (low, high) with 0 < low <= high, got {scale}")
        if not 0 < cat_max_ratio <= 1:
            raise ValueError(f"cat_max_ratio must be in (0, 1], got {cat_max_ratio}")
        self.cat_max_ratio = cat_max_ratio
        self.crop = _pair(crop)
        self.scale = scale
        self.flip = flip
        self.photometric = photometric
        self.base_size = base_size
        self.ignore_index = ignore_index

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = image.shape[-2:]
        factor = uniform(generator, *self.scale)
        if self.base_size is not None:
            factor *= self.base_size / min(h, w)
        sh, sw = max(1, round(h * factor)), max(1, round(w * factor))
        ch, cw = self.crop
        for _ in range(10 if self.cat_max_ratio < 1 else 1):
            top = randint(generator, 0, max(0, sh - ch))
            left = randint(generator, 0, max(0, sw - cw))
            # Resize only the source window under the crop (not the whole image): at scale 2 a 512 crop
            # of a 2048x1024 frame touches a quarter of it, which is most of the transform's cost.
            y0, y1, out_h, off_y = _source_window(top, min(ch, sh), sh / h, h)
            x0, x1, out_w, off_x = _source_window(left, min(cw, sw), sw / w, w)
            cropped = resize_mask(mask[y0:y1, x0:x1], (out_h, out_w))[off_y:off_y + ch, off_x:off_x + cw]
            if self.cat_max_ratio >= 1 or _balanced(cropped, self.cat_max_ratio, self.ignore_index):
                break
        window = unit_float(image[:, y0:y1, x0:x1])
        image = resize_image(window, (out_h, out_w))[:, off_y : off_y + ch, off_x : off_x + cw]
        mask = cropped
        pad_h, pad_w = ch - image.shape[-2], cw - image.shape[-1]
        if pad_h or pad_w:
            image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
            mask = F.pad(mask, (0, pad_w, 0, pad_h), value=self.ignore_index)
        if self.flip and chance(generator, 0.5):
            image, mask = image.flip(-1), mask.flip(-1)
        if self.photometric:
            image = photometric_distortion(image, generator)
        # A prepared store hands over uint8 masks (see takes_uint8); training wants int64 ids.
        return image.contiguous(), mask.to(torch.int64).contiguous()


def _balanced(mask: torch.Tensor, cat_max_ratio: float, ignore_index: int) -> bool:
    """mmseg's acceptance test: more than one class, none above ``cat_max_ratio`` of the labelled pixels."""
    counts = torch.bincount(mask[mask != ignore_index].flatten().long())
    counts = counts[counts > 0]
    return len(counts) > 1 and float(counts.max()) / float(counts.sum()) < cat_max_ratio


class SegEvalTransform:
    """Deterministic evaluation resize: ``size`` None keeps the image, an int sets the short side.

    Args:
        size: None, a short-side length, or an exact (h, w).
        resize_mask: also resize the mask (nearest); False keeps labels at full resolution, and the
            caller upsamples logits to the mask instead.
    """

    def __init__(self, size: int | tuple[int, int] | None = None, resize_mask: bool = True) -> None:
        self.size = size
        self.resize_mask = resize_mask

    def __call__(
        self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.size is None:
            return image, mask
        h, w = image.shape[-2:]
        if isinstance(self.size, int):
            f = self.size / min(h, w)
            target = (max(1, round(h * f)), max(1, round(w * f)))
        else:
            target = _pair(self.size)
        image = resize_image(image, target)
        return image, (resize_mask(mask, target) if self.resize_mask else mask)


def random_resized_crop_box(
    h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float], generator: torch.Generator | None = None
) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a crop covering ``scale`` of the area with aspect in ``ratio``."""
    area = h * w
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * uniform(generator, *scale)
        aspect = math.exp(uniform(generator, log_lo, log_hi))
        cw = round(math.sqrt(target * aspect))
        ch = round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            return randint(generator, 0, h - ch), randint(generator, 0, w - cw), ch, cw
    # Fallback: the largest central crop whose aspect lies in ``ratio``.
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif in_ratio > ratio[1]:
        ch, cw = h, round(h * ratio[1])
    else:
        ch, cw = h, w
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class Stage1Transform:
    """Image-only stage 1 augmentation: random resized crop, flip, then timm's RandAugment and random erasing.

    Args:
        size: output side (or (h, w)).
        scale: crop area range relative to the image (0.08-1 as in the paper).
        ratio: crop aspect range.
        flip: horizontal flip with probability 0.5.
        randaugment: timm RandAugment config (default ``rand-m9-mstd0.5-inc1``, DeiT's); None disables it.
        erasing: random erasing probability (timm's pixel mode).
    """

    takes_uint8 = True  # uint8 images are converted window by window (see unit_float)

    def __init__(
        self,
        size: int | tuple[int, int],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: bool = True,
        randaugment: str | None = DEFAULT_RANDAUGMENT,
        erasing: float = 0.25,
    ) -> None:
        self.size = _pair(size)
        self.scale = scale
        self.ratio = ratio
        self.flip = flip
        self.augment = TimmImageAugment(min(self.size), randaugment=randaugment, erasing=erasing)

    def __call__(self, image: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        top, left, ch, cw = random_resized_crop_box(image.shape[-2], image.shape[-1], self.scale, self.ratio, generator)
        image = resize_image(unit_float(image[:, top : top + ch, left : left + cw]), self.size)
        if self.flip and chance(generator, 0.5):
            image = image.flip(-1)
        return self.augment(image, generator).contiguous()

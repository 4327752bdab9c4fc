"""Image and mask decoding with PIL (torchvision.io's decoders are unavailable on these builds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from gkd_core.errors import DatasetError

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_SINGLE_CHANNEL_MODES = {"1", "L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N"}


def load_image(path: Path) -> np.ndarray:
    """Decode an image file to uint8 HxWx3 RGB.

    Raises:
        DatasetError: the file is missing or not a readable image.
    """
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def load_mask(path: Path) -> np.ndarray:
    """Decode a label PNG to a 2-D integer array of raw label values (palette indices, not colours).

    Palette ("P") PNGs such as GTA5's hold label ids as indices, so they are never converted to RGB.
    An RGB mask whose three channels are equal is accepted (some tools save grey masks as RGB).

    Raises:
        DatasetError: unreadable file, or a true colour mask (ids cannot be recovered from colours).
    """
    try:
        with Image.open(path) as img:
            mode = img.mode
            arr = np.asarray(img)
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot read mask {path}: {exc}") from exc
    if mode in _SINGLE_CHANNEL_MODES:
        return arr.astype(np.int64) if mode.startswith("I") else arr
    if (
        arr.ndim == 3
        and arr.shape[2] >= 3
        and (arr[..., 0] == arr[..., 1]).all()
        and (arr[..., 0] == arr[..., 2]).all()
    ):
        return arr[..., 0].copy()
    raise DatasetError(
        f"mask {path} is a {mode} colour image; masks must be single-channel PNGs of class ids "
        "(convert colour-coded masks to ids first)"
    )


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header without decoding the pixels (fast, for validation)."""
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DatasetError(f"cannot read {path}: {exc}") from exc
    return height, width

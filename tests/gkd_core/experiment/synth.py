"""Tiny labelled domains in the "folder" layout, written by the tests themselves.

Each image holds a few axis-aligned rectangles whose class is their shape (tall, wide, square) on a
background class; a domain's style changes the colours, so targets differ from the source.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["background", "tall", "wide", "square"]


def write_domain(root: Path, *, seed: int, style: int, count: int = 4, size: int = 32, split: str = "train") -> Path:
    """Write ``count`` images and masks under ``root`` (images/{split}, masks/{split}, classes.json)."""
    rng = np.random.default_rng(seed)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    (root / "masks" / split).mkdir(parents=True, exist_ok=True)
    palette = np.random.default_rng(1000 + style).integers(0, 256, size=(len(CLASSES), 3))
    for i in range(count):
        mask = np.zeros((size, size), dtype=np.uint8)
        for _ in range(3):
            cls = int(rng.integers(1, len(CLASSES)))
            h, w = {1: (12, 5), 2: (5, 12), 3: (8, 8)}[cls]
            top, left = int(rng.integers(0, size - h)), int(rng.integers(0, size - w))
            mask[top : top + h, left : left + w] = cls
        mask[0, :3] = 255  # a few ignored pixels
        image = palette[np.minimum(mask, len(CLASSES) - 1)] + rng.integers(-20, 20, size=(size, size, 3))
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(root / "images" / split / f"img{i}.png")
        Image.fromarray(mask).save(root / "masks" / split / f"img{i}.png")
    (root / "classes.json").write_text(json.dumps({"names": CLASSES, "ignore_index": 255}))
    return root

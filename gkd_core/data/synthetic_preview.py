"""A PNG grid of the synthetic benchmark: the same scenes rendered in every domain, plus the mask.

Used for docs/images/synthetic_domains.png (``gkd data synth --preview PATH`` writes one too).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from gkd_core.data.synthetic_scene import make_scene
from gkd_core.data.synthetic_styles import MASK_PALETTE, STYLES, render, sample_style

_LABEL_H = 14


def colorize_mask(mask: np.ndarray, palette: list[tuple[int, int, int]] | None = None) -> np.ndarray:
    """Class ids -> RGB (ignore and unknown ids black)."""
    pal = np.zeros((256, 3), np.uint8)
    colours = palette or MASK_PALETTE
    pal[: len(colours)] = np.asarray(colours, np.uint8)
    return pal[mask.astype(np.intp).clip(0, 255)]


def domain_grid(path: str | Path, seed: int = 0, size: int = 96, rows: int = 3, gap: int = 2,
                colours: int | None = 256) -> Path:
    """Write a grid: one column per domain (same scene in each row) and a last column with the mask.

    ``colours`` quantizes the PNG to a palette (noisy domains compress badly; 256 keeps docs small).
    """
    columns = [*STYLES, "mask"]
    width = len(columns) * (size + gap) - gap
    height = _LABEL_H + rows * (size + gap) - gap
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, name in enumerate(columns):
        draw.text((c * (size + gap) + 3, 1), name, fill=(0, 0, 0))
    for r in range(rows):
        scene_rng = np.random.default_rng([seed, 1000 + r])
        scene = make_scene(size, scene_rng)
        for c, name in enumerate(columns):
            if name == "mask":
                tile = colorize_mask(scene.label)
            else:
                style_rng, render_rng = (np.random.default_rng([seed, 1000 + r, c, k]) for k in range(2))
                tile = render(scene, sample_style(name, style_rng), render_rng)
            canvas.paste(Image.fromarray(tile), (c * (size + gap), _LABEL_H + r * (size + gap)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = canvas.quantize(colours, method=Image.Quantize.MEDIANCUT) if colours else canvas
    out.save(path, optimize=True)
    return path

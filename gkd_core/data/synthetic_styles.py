"""Rendering styles of the synthetic benchmark: the same geometry, different appearance.

- ``toon`` (source): flat shading in saturated colours that no other domain uses; per image each
  class keeps its own toon colour (probability ``TOON_OWN_PROB``) or borrows another class's.
  Colour is a strong but imperfect cue here: the spurious cue a source-only student latches onto,
  while a head on a shape-aware encoder gains by reading shape as well.
- targets: ``clear`` (natural palette and textures), ``night`` (dark, blue, lamps and car lights,
  lit windows, noise), ``fog`` (natural, haze growing with depth), ``sensor`` (colour cast, blur,
  strong noise, vignetting), ``retro`` (a different fixed palette, checker/dot textures, posterized).
- ``pool`` (teacher pretraining): a fresh random palette, part colours, textures and illumination
  per image. Pool styles are disjoint from the targets by construction: brightness stays >= 0.6
  (no night), no haze, no blur, noise <= 0.02, no checker/dot textures, no posterization, and a
  palette is redrawn if it comes close to any fixed palette (toon, natural, retro).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageFilter

from gkd_core.data.synthetic_scene import (
    BUILDING,
    CAR,
    CLASSES,
    NUM_PARTS,
    PART_LAMP,
    PART_MARKING,
    PART_NONE,
    PART_WINDOW,
    PERSON,
    ROAD,
    SIDEWALK,
    SKY,
    TREE,
    Scene,
)

K = len(CLASSES)


def _palette(rgb: list[tuple[int, int, int]]) -> np.ndarray:
    return np.asarray(rgb, np.float32) / 255.0


# sky, road, sidewalk, building, tree, car, person, pole
TOON_PALETTE = _palette(
    [
        (255, 0, 200),
        (0, 230, 60),
        (255, 240, 0),
        (20, 40, 255),
        (255, 110, 0),
        (0, 240, 240),
        (140, 0, 255),
        (255, 0, 0),
    ]
)
NATURAL_PALETTE = _palette(
    [
        (135, 185, 235),
        (92, 92, 98),
        (175, 165, 150),
        (150, 122, 100),
        (60, 122, 45),
        (150, 45, 45),
        (70, 72, 120),
        (112, 112, 118),
    ]
)
RETRO_PALETTE = _palette(
    [
        (250, 222, 170),
        (122, 70, 112),
        (205, 142, 110),
        (80, 150, 140),
        (172, 192, 82),
        (232, 162, 40),
        (45, 42, 40),
        (190, 82, 62),
    ]
)
# Toon's colour cue is strong but imperfect: per image, each class keeps its own toon colour with
# probability TOON_OWN_PROB, else it borrows the toon colour of the class TOON_BORROW_SHIFTS away
# (one shift drawn uniformly). A head that only reads colour then confuses classes, so it pays to
# also read shape; a student trained on toon alone still gets most of its accuracy from colour.
TOON_OWN_PROB = 0.75
TOON_BORROW_SHIFTS: tuple[int, ...] = (1, 3)
TOON_PALETTES: tuple[np.ndarray, ...] = (
    TOON_PALETTE,
    *(np.roll(TOON_PALETTE, shift, axis=0) for shift in TOON_BORROW_SHIFTS),
)
FIXED_PALETTES: dict[str, np.ndarray] = {
    "toon": TOON_PALETTE,
    **{f"toon_shift{s}": p for s, p in zip(TOON_BORROW_SHIFTS, TOON_PALETTES[1:], strict=True)},
    "natural": NATURAL_PALETTE,
    "retro": RETRO_PALETTE,
}
# A display palette for masks (Cityscapes colours of the matching classes); written to classes.json.
MASK_PALETTE: list[tuple[int, int, int]] = [
    (70, 130, 180),
    (128, 64, 128),
    (244, 35, 232),
    (70, 70, 70),
    (107, 142, 35),
    (0, 0, 142),
    (220, 20, 60),
    (153, 153, 153),
]
# Pool palettes must stay this far (mean RGB distance per class, 0..1 units) from every fixed palette.
POOL_MIN_PALETTE_DISTANCE = 0.25

TARGET_STYLES: tuple[str, ...] = ("clear", "night", "fog", "sensor", "retro")
STYLES: tuple[str, ...] = ("toon", *TARGET_STYLES, "pool")


@dataclass
class Style:
    """Appearance parameters drawn per image (see ``sample_style``)."""

    palette: np.ndarray  # K x 3 base colour per class
    class_jitter: float = 0.0  # std of a per-image shift of every class colour
    instance_jitter: np.ndarray = field(default_factory=lambda: np.zeros(K, np.float32))  # per class
    part_colors: np.ndarray = field(default_factory=lambda: np.zeros((NUM_PARTS, 3), np.float32))
    part_alpha: float = 0.35
    texture: str = "noise"  # noise | stripes | blotch | checker | dots
    texture_amp: np.ndarray = field(default_factory=lambda: np.zeros(K, np.float32))
    texture_scale: float = 1.0
    gradient: float = 0.0  # illumination gradient strength
    brightness: float = 1.0
    contrast: float = 1.0
    gamma: float = 1.0
    tint: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))
    fog: float = 0.0
    fog_color: np.ndarray = field(default_factory=lambda: np.array([0.78, 0.8, 0.82], np.float32))
    night: bool = False
    blur: float = 0.0  # gaussian sigma in pixels
    noise: float = 0.0
    vignette: float = 0.0
    posterize: int = 0  # levels per channel, 0 = off


def _natural(rng: np.random.Generator) -> Style:
    parts = np.array(
        [[0, 0, 0], [0.55, 0.7, 0.85], [0.07, 0.07, 0.08], [0.92, 0.74, 0.62], [0.95, 0.95, 0.92], [1.0, 0.92, 0.7]],
        np.float32,
    )
    amp = np.zeros(K, np.float32)
    amp[[SKY, ROAD, SIDEWALK, BUILDING, TREE]] = [0.05, 0.12, 0.1, 0.06, 0.3]
    jitter = np.zeros(K, np.float32)
    jitter[[BUILDING, CAR, PERSON]] = [0.08, 0.28, 0.2]
    return Style(
        palette=NATURAL_PALETTE.copy(),
        class_jitter=0.04,
        instance_jitter=jitter,
        part_colors=parts,
        part_alpha=0.85,
        texture="noise",
        texture_amp=amp,
        gradient=rng.uniform(0.0, 0.15),
        brightness=rng.uniform(0.9, 1.1),
    )


def _toon_palette(rng: np.random.Generator) -> np.ndarray:
    """Per class, its own toon colour (probability TOON_OWN_PROB) or another class's (see TOON_PALETTES)."""
    borrow = rng.random(K) >= TOON_OWN_PROB
    which = np.where(borrow, 1 + rng.integers(0, len(TOON_BORROW_SHIFTS), K), 0)
    return np.stack([TOON_PALETTES[w][c] for c, w in enumerate(which)]).astype(np.float32)


def _random_palette(rng: np.random.Generator) -> np.ndarray:
    for _ in range(100):
        hsv = np.stack([rng.uniform(0, 1, K), rng.uniform(0, 1, K), rng.uniform(0.25, 1, K)], axis=1)
        pal = _hsv_to_rgb(hsv)
        if all(
            np.linalg.norm(pal - fixed, axis=1).mean() >= POOL_MIN_PALETTE_DISTANCE for fixed in FIXED_PALETTES.values()
        ):
            return pal
    raise RuntimeError("could not draw a pool palette away from the fixed palettes")  # pragma: no cover


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[:, 0] * 6.0, hsv[:, 1], hsv[:, 2]
    i = np.floor(h).astype(int) % 6
    f = h - np.floor(h)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = np.stack([np.stack(c, 1) for c in ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))])
    return table[i, np.arange(len(i))].astype(np.float32)


def sample_style(name: str, rng: np.random.Generator) -> Style:
    """Draw the appearance of one image in style ``name`` (one of ``STYLES``)."""
    if name == "toon":
        return Style(
            palette=_toon_palette(rng),
            class_jitter=0.015,
            instance_jitter=np.full(K, 0.015, np.float32),
            part_alpha=0.3,
            texture="noise",
            texture_amp=np.full(K, 0.015, np.float32),
            brightness=rng.uniform(0.97, 1.03),
        )
    if name == "clear":
        return _natural(rng)
    if name == "night":
        st = _natural(rng)
        st.night, st.brightness, st.noise = True, rng.uniform(0.16, 0.26), 0.03
        st.tint = np.array([0.75, 0.85, 1.3], np.float32)
        return st
    if name == "fog":
        st = _natural(rng)
        st.fog, st.contrast = rng.uniform(1.2, 1.9), 0.9
        return st
    if name == "sensor":
        st = _natural(rng)
        casts = np.array([[0.85, 1.15, 0.85], [1.2, 0.9, 1.1], [1.15, 1.0, 0.75]], np.float32)
        st.tint = casts[int(rng.integers(len(casts)))]
        st.blur, st.noise, st.vignette = rng.uniform(1.0, 1.6), rng.uniform(0.06, 0.09), 0.5
        return st
    if name == "retro":
        parts = np.array(
            [[0, 0, 0], [0.95, 0.9, 0.8], [0.2, 0.15, 0.2], [0.95, 0.6, 0.5], [0.98, 0.98, 0.9], [1.0, 1.0, 0.6]],
            np.float32,
        )
        amp = np.full(K, 0.18, np.float32)
        return Style(
            palette=RETRO_PALETTE.copy(),
            class_jitter=0.03,
            instance_jitter=np.full(K, 0.05, np.float32),
            part_colors=parts,
            part_alpha=0.7,
            texture="checker" if rng.random() < 0.5 else "dots",
            texture_amp=amp,
            texture_scale=rng.uniform(0.8, 1.3),
            posterize=5,
        )
    if name == "pool":
        return Style(
            palette=_random_palette(rng),
            class_jitter=rng.uniform(0.0, 0.08),
            instance_jitter=rng.uniform(0.0, 0.25, K).astype(np.float32),
            part_colors=rng.uniform(0, 1, (NUM_PARTS, 3)).astype(np.float32),
            part_alpha=rng.uniform(0.2, 0.9),
            texture=str(rng.choice(["noise", "stripes", "blotch"])),
            texture_amp=rng.uniform(0.0, 0.3, K).astype(np.float32),
            texture_scale=rng.uniform(0.6, 1.6),
            gradient=rng.uniform(0.0, 0.3),
            brightness=rng.uniform(0.6, 1.2),
            contrast=rng.uniform(0.7, 1.2),
            gamma=rng.uniform(0.8, 1.25),
            tint=rng.uniform(0.85, 1.15, 3).astype(np.float32),
            noise=rng.uniform(0.0, 0.02),
        )
    raise ValueError(f"unknown style {name!r}; choose one of {', '.join(STYLES)}")


def _smooth_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """Low-frequency noise in [-1, 1]: a coarse random grid upsampled bilinearly."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BILINEAR))


def _texture(style: Style, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    period = max(2.0, size / 24 * style.texture_scale)
    if style.texture == "stripes":
        theta = rng.uniform(0, np.pi)
        return np.sin((yy * np.cos(theta) + xx * np.sin(theta)) * (2 * np.pi / period)).astype(np.float32)
    if style.texture == "blotch":
        return _smooth_noise(size, max(3, int(size / (3 * period))), rng)
    if style.texture == "checker":
        return np.where(((yy // period) + (xx // period)) % 2 == 0, 1.0, -1.0).astype(np.float32)
    if style.texture == "dots":
        fy, fx = (yy % period) / period - 0.5, (xx % period) / period - 0.5
        return np.where(fy**2 + fx**2 < 0.09, -1.0, 0.4).astype(np.float32)
    return (
        rng.uniform(-1, 1, (size, size)).astype(np.float32) * 0.6 + _smooth_noise(size, max(3, size // 12), rng) * 0.4
    )


def render(scene: Scene, style: Style, rng: np.random.Generator) -> np.ndarray:
    """Render ``scene`` in ``style``; returns uint8 HxWx3."""
    size = scene.label.shape[0]
    label = scene.label.astype(np.intp)
    palette = style.palette + rng.normal(0.0, style.class_jitter, (K, 3)).astype(np.float32)
    img = palette[label]
    # Per-instance colour: each car/person/building gets its own shift around the class colour.
    inst_cls = np.zeros(scene.num_instances, np.intp)
    inst_cls[scene.inst.ravel()] = label.ravel()
    shifts = rng.normal(0.0, 1.0, (scene.num_instances, 3)).astype(np.float32) * style.instance_jitter[inst_cls, None]
    shifts[0] = 0.0
    img = img + shifts[scene.inst]
    tex = _texture(style, size, rng)
    img = img * (1.0 + style.texture_amp[label] * tex)[..., None]
    part = scene.part.astype(np.intp)
    has_part = (part != PART_NONE)[..., None]
    part_rgb = style.part_colors[part]
    if style.night:
        # Lit windows: a random half of the window cells glow; they are drawn after darkening.
        part_rgb = part_rgb.copy()
        lit = (_smooth_noise(size, max(3, size // 8), rng) > 0.0) & (part == PART_WINDOW) & (label == BUILDING)
        part_rgb[lit] = (1.0, 0.85, 0.45)
    img = np.where(has_part, (1 - style.part_alpha) * img + style.part_alpha * part_rgb, img)
    if style.gradient:
        theta = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
        img = img * (1.0 + style.gradient * 2 * (yy * np.cos(theta) + xx * np.sin(theta)))[..., None]
    img = np.clip(img, 0.0, 1.0) ** style.gamma
    img = (img - 0.5) * style.contrast + 0.5
    img = img * style.brightness * style.tint
    if style.night:
        glow_parts = (part == PART_LAMP) | ((part == PART_WINDOW) & (label == BUILDING))
        img = np.where(glow_parts[..., None] & (part_rgb.sum(-1, keepdims=True) > 2.0), part_rgb, img)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        for ly, lx, radius in scene.lights:
            img = (
                img
                + np.array([0.9, 0.75, 0.45], np.float32)
                * (0.55 * np.exp(-((yy - ly) ** 2 + (xx - lx) ** 2) / (2 * radius**2)))[..., None]
            )
        img[(part == PART_MARKING)] *= 1.5
    if style.fog:
        f = 1.0 - np.exp(-style.fog * (0.15 + scene.depth))
        img = img * (1 - f[..., None]) + f[..., None] * style.fog_color
    if style.vignette:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
        img = img * (1.0 - style.vignette * (yy**2 + xx**2) * 2)[..., None]
    out = np.clip(img, 0.0, 1.0)
    if style.blur:
        pil = Image.fromarray((out * 255 + 0.5).astype(np.uint8))
        out = np.asarray(pil.filter(ImageFilter.GaussianBlur(style.blur * size / 96)), np.float32) / 255.0
    if style.noise:
        out = out + rng.normal(0.0, style.noise, out.shape).astype(np.float32)
    if style.posterize:
        levels = style.posterize - 1
        out = np.round(np.clip(out, 0, 1) * levels) / levels
    return (np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

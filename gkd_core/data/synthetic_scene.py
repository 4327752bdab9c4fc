"""Procedural street scenes for the synthetic benchmark: labels from shape, layout and context.

A scene is drawn once as geometry (class map, object parts, instance ids, depth, light positions)
and then rendered in any style (``synthetic_styles``). Class identity lives in the geometry: sky
above the horizon, a road converging to a vanishing point, sidewalks beside it, box buildings with
window grids along the horizon, trees (trunk + crown) and poles (thin, with a lamp or sign) on the
sidewalk, cars (body, cabin, wheels) on the road and people (head, torso, legs) on the sidewalk,
all scaled by perspective and painted far to near.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

CLASSES: tuple[str, ...] = ("sky", "road", "sidewalk", "building", "tree", "car", "person", "pole")
SKY, ROAD, SIDEWALK, BUILDING, TREE, CAR, PERSON, POLE = range(len(CLASSES))
# Object parts: drawn with their own colour by styles that have one (labels stay the object's class).
PART_NONE, PART_WINDOW, PART_WHEEL, PART_SKIN, PART_MARKING, PART_LAMP = range(6)
NUM_PARTS = 6


@dataclass
class Scene:
    """Geometry of one image; every array is HxW."""

    label: np.ndarray  # uint8 class ids
    part: np.ndarray  # uint8 PART_*
    inst: np.ndarray  # int32 instance ids (0 = stuff)
    depth: np.ndarray  # float32, 0 near .. 1 far (sky)
    horizon: float
    lights: list[tuple[float, float, float]] = field(default_factory=list)  # (y, x, radius) of lamps

    @property
    def num_instances(self) -> int:
        return int(self.inst.max()) + 1


class _Canvas:
    """Paints shapes into the scene arrays inside a clipped bounding box (keeps drawing O(object size))."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.label = np.zeros((size, size), np.uint8)
        self.part = np.zeros((size, size), np.uint8)
        self.inst = np.zeros((size, size), np.int32)
        self.depth = np.ones((size, size), np.float32)
        self.next_inst = 1

    def new_instance(self) -> int:
        self.next_inst += 1
        return self.next_inst - 1

    def paint(
        self,
        box: tuple[float, float, float, float],
        shape: Callable[[np.ndarray, np.ndarray], np.ndarray],
        cls: int,
        inst: int,
        depth: float,
        part: int = PART_NONE,
    ) -> None:
        """Fill pixels of ``shape(yy, xx)`` (pixel-centre coordinates) inside box (y0, y1, x0, x1)."""
        y0, y1 = max(0, int(np.floor(box[0]))), min(self.size, int(np.ceil(box[1])) + 1)
        x0, x1 = max(0, int(np.floor(box[2]))), min(self.size, int(np.ceil(box[3])) + 1)
        if y0 >= y1 or x0 >= x1:
            return
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32) + 0.5
        m = shape(yy, xx)
        if not m.any():
            return
        sl = (slice(y0, y1), slice(x0, x1))
        self.label[sl][m] = cls
        self.part[sl][m] = part
        self.inst[sl][m] = inst
        self.depth[sl][m] = depth


def _rect(y0: float, y1: float, x0: float, x1: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    return lambda yy, xx: (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)


def _ellipse(cy: float, cx: float, ry: float, rx: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    ry, rx = max(ry, 0.5), max(rx, 0.5)
    return lambda yy, xx: ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _trapezoid(
    y0: float, y1: float, cx: float, top_half: float, bottom_half: float
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def shape(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        t = np.clip((yy - y0) / max(y1 - y0, 1e-3), 0.0, 1.0)
        half = top_half + (bottom_half - top_half) * t
        return (yy >= y0) & (yy < y1) & (np.abs(xx - cx) <= half)

    return shape


@dataclass(frozen=True)
class _Road:
    horizon: float
    size: int
    vx: float
    far_half: float
    near_centre: float
    near_half: float

    def edges(self, y: float) -> tuple[float, float]:
        t = (y - self.horizon) / (self.size - self.horizon)
        centre = self.vx + (self.near_centre - self.vx) * t
        half = self.far_half + (self.near_half - self.far_half) * t
        return centre - half, centre + half

    def scale(self, y: float) -> float:
        """Perspective size factor: about 0.15 at the horizon, 1 at the bottom edge."""
        return 0.15 + 0.85 * float(np.clip((y - self.horizon) / (self.size - self.horizon), 0.0, 1.2))


def _ground(c: _Canvas, road: _Road, rng: np.random.Generator) -> None:
    s, h = c.size, road.horizon
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) + 0.5
    t = np.clip((yy - h) / (s - h), 0.0, 1.0)
    centre = road.vx + (road.near_centre - road.vx) * t
    half = road.far_half + (road.near_half - road.far_half) * t
    ground = yy >= h
    on_road = ground & (np.abs(xx - centre) <= half)
    c.label[ground] = SIDEWALK
    c.label[on_road] = ROAD
    c.depth[ground] = 1.0 - t[ground] * 0.95
    # Dashed centre line: dash period grows toward the viewer like a real lane marking.
    dash = (np.sqrt(np.maximum(yy - h, 0.0)) * rng.uniform(0.9, 1.3)) % 1.0 < 0.5
    marking = on_road & (np.abs(xx - centre) <= 0.3 + half * 0.035) & dash & (t > 0.08)
    c.part[marking] = PART_MARKING


def _building(c: _Canvas, h: float, rng: np.random.Generator) -> None:
    s = c.size
    w = s * rng.uniform(0.1, 0.3)
    x0 = rng.uniform(-0.1 * s, s - 0.05 * s)
    top = h - s * rng.uniform(0.08, 0.32)
    inst = c.new_instance()
    c.paint((top, h + 1, x0, x0 + w), _rect(top, h + 1, x0, x0 + w), BUILDING, inst, 0.97)
    if rng.random() < 0.35:  # pitched roof
        rh = w * rng.uniform(0.2, 0.45)
        c.paint(
            (top - rh, top, x0, x0 + w), _trapezoid(top - rh, top + 0.5, x0 + w / 2, 0.5, w / 2), BUILDING, inst, 0.97
        )
    # Window grid (part of the building class, but a strong shape cue).
    pitch = max(3.0, s / rng.uniform(14, 22))
    wy0, wx0 = top + pitch * 0.6, x0 + pitch * 0.5
    frac = rng.uniform(0.4, 0.6)

    def windows(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        fy = ((yy - wy0) / pitch) % 1.0
        fx = ((xx - wx0) / pitch) % 1.0
        return (
            (yy > wy0) & (yy < h - pitch * 0.8) & (xx > wx0) & (xx < x0 + w - pitch * 0.4) & (fy < frac) & (fx < frac)
        )

    c.paint((top, h, x0, x0 + w), windows, BUILDING, inst, 0.97, PART_WINDOW)


def _sidewalk_x(road: _Road, y: float, rng: np.random.Generator, margin: float) -> float | None:
    left, right = road.edges(y)
    spans = [(0.0, left - margin), (right + margin, float(road.size))]
    spans = [(a, b) for a, b in spans if b - a > 1.0]
    if not spans:
        return None
    a, b = spans[int(rng.integers(len(spans)))]
    return float(rng.uniform(a, b))


def _tree(c: _Canvas, road: _Road, yb: float, rng: np.random.Generator) -> None:
    k = road.scale(yb)
    x = _sidewalk_x(road, yb, rng, margin=c.size * 0.02 * k)
    if x is None:
        return
    s, inst, d = c.size, c.new_instance(), 1.0 - (k - 0.15) / 0.85 * 0.95
    trunk_h, trunk_w = s * 0.13 * k * rng.uniform(0.8, 1.2), max(1.0, s * 0.02 * k)
    c.paint(
        (yb - trunk_h, yb, x - trunk_w, x + trunk_w),
        _rect(yb - trunk_h, yb, x - trunk_w / 2, x + trunk_w / 2),
        TREE,
        inst,
        d,
    )
    if rng.random() < 0.6:  # round crown
        ry, rx = s * 0.1 * k * rng.uniform(0.8, 1.3), s * 0.08 * k * rng.uniform(0.8, 1.3)
        cy = yb - trunk_h - ry * 0.7
        c.paint((cy - ry, cy + ry, x - rx, x + rx), _ellipse(cy, x, ry, rx), TREE, inst, d)
    else:  # conifer
        ch, half = s * 0.3 * k * rng.uniform(0.8, 1.2), s * 0.07 * k * rng.uniform(0.8, 1.2)
        y0 = yb - trunk_h * 0.6 - ch
        c.paint((y0, y0 + ch, x - half, x + half), _trapezoid(y0, y0 + ch, x, 0.3, half), TREE, inst, d)


def _pole(
    c: _Canvas, road: _Road, yb: float, rng: np.random.Generator, lights: list[tuple[float, float, float]]
) -> None:
    k = road.scale(yb)
    x = _sidewalk_x(road, yb, rng, margin=c.size * 0.01 * k)
    if x is None:
        return
    s, inst, d = c.size, c.new_instance(), 1.0 - (k - 0.15) / 0.85 * 0.95
    ph, pw = s * 0.42 * k * rng.uniform(0.8, 1.15), max(1.0, s * 0.014 * k)
    top = yb - ph
    c.paint((top, yb, x - pw, x + pw), _rect(top, yb, x - pw / 2, x + pw / 2), POLE, inst, d)
    if rng.random() < 0.5:  # street lamp: an arm toward the road and a lamp head
        left, _ = road.edges(yb)
        direction = 1.0 if x < left else -1.0
        arm = s * 0.08 * k
        ax0, ax1 = sorted((x, x + direction * arm))
        c.paint((top, top + pw * 1.2, ax0, ax1), _rect(top, top + pw * 1.2, ax0, ax1), POLE, inst, d)
        lx, lr = x + direction * arm, max(1.0, s * 0.018 * k)
        c.paint(
            (top - lr, top + 2 * lr, lx - 2 * lr, lx + 2 * lr),
            _ellipse(top + lr * 0.6, lx, lr, lr * 1.6),
            POLE,
            inst,
            d,
            PART_LAMP,
        )
        lights.append((top + lr, lx, s * 0.09 * k))
    else:  # sign plate
        r = s * 0.035 * k
        c.paint((top - r, top + r, x - r, x + r), _ellipse(top, x, r, r), POLE, inst, d)


def _car(
    c: _Canvas, road: _Road, yb: float, rng: np.random.Generator, lights: list[tuple[float, float, float]]
) -> None:
    k = road.scale(yb)
    left, right = road.edges(min(yb, c.size - 1.0))
    cw = c.size * 0.3 * k * rng.uniform(0.85, 1.15)
    x = float(rng.uniform(left + cw * 0.3, right - cw * 0.3)) if right - left > cw * 0.6 else (left + right) / 2
    inst, d = c.new_instance(), 1.0 - (k - 0.15) / 0.85 * 0.95
    r = cw * 0.11
    body_top, body_bot = yb - r - cw * 0.3, yb - r * 0.6
    cab_h, offset = cw * 0.26, cw * rng.uniform(-0.08, 0.08)
    c.paint(
        (body_top - cab_h, body_top + 1, x - cw / 2, x + cw / 2),
        _trapezoid(body_top - cab_h, body_top + 0.5, x + offset, cw * 0.24, cw * 0.36),
        CAR,
        inst,
        d,
    )
    c.paint(
        (body_top - cab_h, body_top, x - cw / 2, x + cw / 2),
        _trapezoid(body_top - cab_h * 0.8, body_top - cab_h * 0.1, x + offset, cw * 0.18, cw * 0.3),
        CAR,
        inst,
        d,
        PART_WINDOW,
    )
    c.paint(
        (body_top, body_bot, x - cw / 2, x + cw / 2), _rect(body_top, body_bot, x - cw / 2, x + cw / 2), CAR, inst, d
    )
    for wx in (x - cw * 0.3, x + cw * 0.3):
        c.paint((yb - 2 * r, yb, wx - r, wx + r), _ellipse(yb - r, wx, r, r), CAR, inst, d, PART_WHEEL)
    ly, lh = body_top + (body_bot - body_top) * 0.25, max(1.0, cw * 0.07)
    for lx in (x - cw / 2, x + cw / 2 - lh * 1.5):
        c.paint((ly, ly + lh, lx, lx + lh * 1.5), _rect(ly, ly + lh, lx, lx + lh * 1.5), CAR, inst, d, PART_LAMP)
        lights.append((ly + lh / 2, lx + lh * 0.75, cw * 0.18))


def _person(c: _Canvas, road: _Road, yb: float, rng: np.random.Generator) -> None:
    k = road.scale(yb)
    x = _sidewalk_x(road, yb, rng, margin=0.0) if rng.random() < 0.85 else float(rng.uniform(*road.edges(yb)))
    if x is None:
        return
    inst, d = c.new_instance(), 1.0 - (k - 0.15) / 0.85 * 0.95
    ph = c.size * 0.24 * k * rng.uniform(0.85, 1.15)
    top, hr = yb - ph, ph * 0.085
    tw = ph * 0.13
    c.paint(
        (top + 1.6 * hr, yb - ph * 0.42, x - tw * 1.6, x + tw * 1.6),
        _ellipse(top + ph * 0.37, x, ph * 0.2, tw),
        PERSON,
        inst,
        d,
    )  # torso
    stride = rng.uniform(0.0, 0.09) * ph
    for sign in (-1.0, 1.0):
        lx = x + sign * (tw * 0.45 + stride / 2)
        c.paint(
            (yb - ph * 0.48, yb, lx - ph * 0.05, lx + ph * 0.05),
            _rect(yb - ph * 0.48, yb, lx - ph * 0.04, lx + ph * 0.04),
            PERSON,
            inst,
            d,
        )  # legs
        ax = x + sign * tw * 1.15
        c.paint(
            (top + ph * 0.2, top + ph * 0.55, ax - ph * 0.04, ax + ph * 0.04),
            _rect(top + ph * 0.2, top + ph * 0.55, ax - ph * 0.03, ax + ph * 0.03),
            PERSON,
            inst,
            d,
        )  # arms
    c.paint((top, top + 2 * hr, x - hr, x + hr), _ellipse(top + hr, x, hr, hr), PERSON, inst, d, PART_SKIN)


def make_scene(size: int, rng: np.random.Generator) -> Scene:
    """Draw one random street scene of ``size`` x ``size`` pixels from ``rng``."""
    s = size
    h = s * rng.uniform(0.32, 0.5)
    road = _Road(
        horizon=h,
        size=s,
        vx=s * rng.uniform(0.3, 0.7),
        far_half=s * 0.015,
        near_centre=s * rng.uniform(0.3, 0.7),
        near_half=s * rng.uniform(0.22, 0.42),
    )
    c = _Canvas(s)
    c.label[:] = SKY
    for _ in range(int(rng.integers(3, 8))):
        _building(c, h, rng)
    _ground(c, road, rng)
    objects: list[tuple[float, int]] = []
    counts = {TREE: rng.integers(1, 5), POLE: rng.integers(1, 4), CAR: rng.integers(1, 5), PERSON: rng.integers(1, 6)}
    for cls, n in counts.items():
        for _ in range(int(n)):
            lo = 0.12 if cls == CAR else 0.05
            objects.append((h + (s - h) * float(rng.uniform(lo, 1.08)), cls))
    objects.sort()
    lights: list[tuple[float, float, float]] = []
    for yb, cls in objects:  # far to near, so near objects occlude far ones
        if cls == TREE:
            _tree(c, road, yb, rng)
        elif cls == POLE:
            _pole(c, road, yb, rng, lights)
        elif cls == CAR:
            _car(c, road, yb, rng, lights)
        else:
            _person(c, road, yb, rng)
    return Scene(label=c.label, part=c.part, inst=c.inst, depth=c.depth, horizon=h, lights=lights)

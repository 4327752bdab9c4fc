"""The synthetic multi-domain segmentation benchmark (METHOD.md, "A benchmark that runs anywhere").

``generate_benchmark(out, seed)`` writes, deterministically from the seed, one folder-layout
dataset per domain plus ``benchmark.json`` naming their roles:

    out/benchmark.json
    out/<domain>/classes.json
    out/<domain>/images/{train,val}/<domain>_<split>_<index>.png
    out/<domain>/masks/{train,val}/<domain>_<split>_<index>.png

Roles: ``source`` (toon: colours are a strong, imperfect, spurious cue), ``targets`` (clear, night, fog,
sensor, retro) and ``pool`` (random styles, disjoint from the targets, to pretrain a robust
"foundation" teacher). Every image is an independent scene drawn from the same scene distribution.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gkd_core.data.synthetic_scene import CLASSES, make_scene
from gkd_core.data.synthetic_styles import MASK_PALETTE, STYLES, TARGET_STYLES, render, sample_style
from gkd_core.errors import ConfigError

_logger = logging.getLogger(__name__)

GENERATOR_VERSION = 2  # 2: toon classes borrow other toon colours (imperfect cue)
SOURCE_DOMAIN = "toon"
POOL_DOMAIN = "pool"
STYLE_DESCRIPTIONS: dict[str, str] = {
    "toon": (
        "flat saturated colours used by no other domain; per image each class keeps its own toon colour"
        " (p=0.75) or borrows another class's: a strong but imperfect spurious cue"
    ),
    "clear": "natural palette, per-class textures, per-object colours, mild sun gradient",
    "night": "natural palette darkened and blue-tinted, street lamps and car lights glow, lit windows, noise",
    "fog": "natural palette under haze that thickens with depth",
    "sensor": "natural palette with a colour cast, gaussian blur, strong noise and vignetting",
    "retro": "a different fixed palette with checker or dot textures, posterized",
    "pool": "a random palette, part colours, texture, illumination, contrast and gamma per image",
}


@dataclass(frozen=True)
class BenchmarkSizes:
    """Images per domain and split."""

    source_train: int = 500
    source_val: int = 100
    target_train: int = 0
    target_val: int = 100
    pool_train: int = 2000
    pool_val: int = 100

    def for_domain(self, domain: str) -> dict[str, int]:
        if domain == SOURCE_DOMAIN:
            counts = {"train": self.source_train, "val": self.source_val}
        elif domain == POOL_DOMAIN:
            counts = {"train": self.pool_train, "val": self.pool_val}
        else:
            counts = {"train": self.target_train, "val": self.target_val}
        return {split: n for split, n in counts.items() if n > 0}


TINY_SIZES = BenchmarkSizes(source_train=8, source_val=4, target_train=0, target_val=4, pool_train=8, pool_val=4)


@dataclass(frozen=True)
class DomainInfo:
    """One generated domain: where it lives, its role and style, and its image counts."""

    name: str
    role: str  # source | target | pool
    root: Path
    style: str
    splits: dict[str, int]


@dataclass(frozen=True)
class BenchmarkInfo:
    """What ``generate_benchmark`` wrote (also stored as out/benchmark.json)."""

    root: Path
    seed: int
    size: int
    classes: list[str]
    domains: dict[str, DomainInfo]
    source: str
    targets: list[str]
    pool: str
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form with paths relative to ``root``."""
        return {
            "name": "gkd-synthetic-domain-shift",
            "version": GENERATOR_VERSION,
            "layout": "folder",
            "seed": self.seed,
            "size": self.size,
            "classes": self.classes,
            "ignore_index": 255,
            "source": self.source,
            "targets": self.targets,
            "pool": self.pool,
            "domains": {
                n: {"role": d.role, "path": d.root.name, "style": d.style, "splits": d.splits}
                for n, d in self.domains.items()
            },
        }


def _domain_seed(seed: int, domain: str, split: str, index: int) -> np.random.SeedSequence:
    # Each image gets its own stream, so counts can change without changing other images.
    return np.random.SeedSequence([seed, STYLES.index(domain), 0 if split == "train" else 1, index])


def render_sample(seed: int, domain: str, split: str, index: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (image uint8 HxWx3, mask uint8 HxW) of the benchmark, reproducible from its coordinates."""
    scene_rng, style_rng, render_rng = (
        np.random.default_rng(s) for s in _domain_seed(seed, domain, split, index).spawn(3)
    )
    scene = make_scene(size, scene_rng)
    image = render(scene, sample_style(domain, style_rng), render_rng)
    return image, scene.label


def _classes_json() -> dict[str, Any]:
    return {"names": list(CLASSES), "ignore_index": 255, "palette": [list(c) for c in MASK_PALETTE]}


def generate_benchmark(
    out: str | Path,
    seed: int = 0,
    size: int = 96,
    sizes: BenchmarkSizes | None = None,
    domains: list[str] | None = None,
) -> BenchmarkInfo:
    """Write the synthetic domain-shift benchmark under ``out`` (deterministic from ``seed``).

    Args:
        out: output directory (created; existing domain folders are overwritten file by file).
        seed: the only source of randomness: same seed and arguments give identical bytes.
        size: image side in pixels (64-128 keeps the whole comparison trainable on a CPU).
        sizes: images per domain and split (default ``BenchmarkSizes()``; tests use ``TINY_SIZES``).
        domains: subset of domains to write (default all of ``STYLES``).

    Returns:
        BenchmarkInfo describing the domains and their roles.

    Raises:
        ConfigError: size out of range, negative counts, or an unknown domain.
    """
    if not 32 <= size <= 512:
        raise ConfigError(f"size must be between 32 and 512 pixels, got {size} (64-128 is the intended range)")
    sizes = sizes or BenchmarkSizes()
    if any(v < 0 for v in asdict(sizes).values()):
        raise ConfigError(f"image counts must be >= 0, got {sizes}")
    names = list(domains) if domains is not None else list(STYLES)
    unknown = [d for d in names if d not in STYLES]
    if unknown:
        raise ConfigError(f"unknown domain(s) {unknown}; choose from {', '.join(STYLES)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    infos: dict[str, DomainInfo] = {}
    for domain in names:
        counts = sizes.for_domain(domain)
        root = out / domain
        for split, n in counts.items():
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            (root / "masks" / split).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image, mask = render_sample(seed, domain, split, i, size)
                stem = f"{domain}_{split}_{i:05d}.png"
                Image.fromarray(image).save(root / "images" / split / stem)
                Image.fromarray(mask).save(root / "masks" / split / stem)
        (root / "classes.json").write_text(json.dumps(_classes_json(), indent=2) + "\n")
        role = "source" if domain == SOURCE_DOMAIN else "pool" if domain == POOL_DOMAIN else "target"
        infos[domain] = DomainInfo(name=domain, role=role, root=root, style=STYLE_DESCRIPTIONS[domain], splits=counts)
        _logger.info("synthetic benchmark: wrote %s (%s)", domain, counts)
    info = BenchmarkInfo(
        root=out,
        seed=seed,
        size=size,
        classes=list(CLASSES),
        domains=infos,
        source=SOURCE_DOMAIN,
        targets=[d for d in TARGET_STYLES if d in infos],
        pool=POOL_DOMAIN,
        seconds=time.perf_counter() - start,
    )
    (out / "benchmark.json").write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    return info


def load_benchmark(root: str | Path) -> dict[str, Any]:
    """Read out/benchmark.json (roles and paths of the domains)."""
    path = Path(root) / "benchmark.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is missing or not valid JSON: {exc}") from exc
    return data

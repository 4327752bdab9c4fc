"""Data loading throughput: images/s for 512 px training crops decoded from PNG files.

Writes N random-scene PNG pairs (1024x512, like a downsampled Cityscapes frame) into a temp dir in
the generic folder layout, then times open_dataset + SegTrainTransform(512) + make_loader for
num_workers 0 and 2. Run: ``.venv/bin/python bench/dataloader.py [--images 48] [--batch 8]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import gkd_core  # noqa: F401
from gkd_core.data import SegTrainTransform, make_loader, open_dataset
from gkd_core.data.synthetic_scene import CLASSES


def write_pngs(root: Path, n: int, height: int, width: int, seed: int = 0) -> None:
    """Random smooth images (realistic PNG sizes, unlike pure noise) and blocky masks."""
    rng = np.random.default_rng(seed)
    for split_dir in ("images/train", "masks/train"):
        (root / split_dir).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        coarse = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        img = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
        noisy = np.clip(np.asarray(img, np.int16) + rng.integers(-8, 9, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(root / "images/train" / f"{i:04d}.png")
        labels = rng.integers(0, len(CLASSES), (height // 32, width // 32), dtype=np.uint8)
        mask = Image.fromarray(labels).resize((width, height), Image.Resampling.NEAREST)
        mask.save(root / "masks/train" / f"{i:04d}.png")
    (root / "classes.json").write_text(json.dumps({"names": list(CLASSES), "ignore_index": 255}))


def measure(root: Path, num_workers: int, batch: int, epochs: int) -> float:
    ds = open_dataset(root, "folder", "train", transform=SegTrainTransform(crop=512))
    loader = make_loader(ds, batch_size=batch, shuffle=True, num_workers=num_workers, seed=0, drop_last=True)
    next(iter(loader))  # start workers outside the timed region
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        for b in loader:
            seen += b["image"].shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_pngs(root, args.images, args.height, args.width)
        mb = sum(p.stat().st_size for p in root.rglob("*.png")) / 2**20
        print(f"wrote {args.images} PNG pairs of {args.width}x{args.height} ({mb:.1f} MiB) "
              f"in {time.perf_counter() - start:.1f} s")
        for workers in args.workers:
            rate = measure(root, workers, args.batch, args.epochs)
            print(f"num_workers={workers}: {rate:.1f} images/s (512x512 crops, batch {args.batch}, "
                  f"scale 0.5-2.0, flip, photometric distortion)")


if __name__ == "__main__":
    main()

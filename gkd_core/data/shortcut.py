"""Checks that the synthetic benchmark's source style is a real shortcut (issue 8 asks for evidence).

A per-pixel colour classifier (a 4-bit-per-channel RGB histogram per class, argmax per colour bin,
nearest class mean for colours never seen) is fitted on one domain and scored (mIoU) on every
domain. On the benchmark it is near perfect on the source and poor on the targets, while the same
classifier fitted on the pool is poor everywhere: colour carries no class information there, so a
teacher pretrained on the pool must use shape and context.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gkd_core.data.dataset import open_dataset


def _pixels(root: Path, split: str, max_images: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    ds = open_dataset(root, "folder", split)
    n = len(ds) if max_images is None else min(len(ds), max_images)
    rgb, lab = [], []
    for i in range(n):
        item = ds[i]
        rgb.append((item["image"].permute(1, 2, 0).reshape(-1, 3).numpy() * 255).round().astype(np.int64))
        lab.append(item["mask"].reshape(-1).numpy())
    return np.concatenate(rgb), np.concatenate(lab), ds.num_classes


def _bins(rgb: np.ndarray, bits: int) -> np.ndarray:
    q = rgb >> (8 - bits)
    return (q[:, 0] << (2 * bits)) | (q[:, 1] << bits) | q[:, 2]


class ColourClassifier:
    """Per-pixel classifier that sees only the pixel's RGB value."""

    def __init__(self, num_classes: int, bits: int = 4) -> None:
        self.num_classes, self.bits = num_classes, bits
        self.counts = np.zeros((1 << (3 * bits), num_classes), np.int64)
        self.means = np.zeros((num_classes, 3))

    def fit(self, rgb: np.ndarray, labels: np.ndarray) -> ColourClassifier:
        keep = labels < self.num_classes
        rgb, labels = rgb[keep], labels[keep]
        np.add.at(self.counts, (_bins(rgb, self.bits), labels), 1)
        for c in range(self.num_classes):
            sel = labels == c
            self.means[c] = rgb[sel].mean(0) if sel.any() else np.inf
        return self

    def predict(self, rgb: np.ndarray) -> np.ndarray:
        b = _bins(rgb, self.bits)
        pred = self.counts[b].argmax(1)
        unseen = self.counts[b].sum(1) == 0
        if unseen.any():
            d = ((rgb[unseen, None, :] - self.means[None]) ** 2).sum(-1)
            pred[unseen] = d.argmin(1)
        return pred


def miou(pred: np.ndarray, target: np.ndarray, num_classes: int) -> float:
    """Mean IoU over classes present in prediction or target (ignore values >= num_classes)."""
    keep = target < num_classes
    cm = np.bincount(target[keep] * num_classes + pred[keep], minlength=num_classes**2).reshape(num_classes, -1)
    inter = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - inter
    valid = union > 0
    return float((inter[valid] / union[valid]).mean()) if valid.any() else float("nan")


def colour_shortcut_miou(
    bench_root: str | Path,
    fit_domain: str = "toon",
    fit_split: str = "train",
    eval_split: str = "val",
    max_images: int | None = 200,
) -> dict[str, float]:
    """mIoU of a colour-only classifier fitted on ``fit_domain``, per domain of the benchmark."""
    root = Path(bench_root)
    rgb, lab, k = _pixels(root / fit_domain, fit_split, max_images)
    clf = ColourClassifier(k).fit(rgb, lab)
    out: dict[str, float] = {}
    for domain in sorted(p.name for p in root.iterdir() if (p / "classes.json").is_file()):
        if not (root / domain / "images" / eval_split).is_dir():
            continue
        x, y, _ = _pixels(root / domain, eval_split, max_images)
        out[domain] = miou(clf.predict(x), y, k)
    return out

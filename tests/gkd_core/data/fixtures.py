"""Builders of tiny datasets in every supported layout (real files, a few pixels each)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 6, 8


def image(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if mode == "P":  # palette PNG, as GTA5 ships its labels: pixel values are palette indices
        img = Image.new("P", (array.shape[1], array.shape[0]))
        img.putpalette([v for i in range(256) for v in (i, 255 - i, (7 * i) % 256)])
        img.putdata(array.astype(np.uint8).ravel().tolist())
    img.save(path)
    return path


def mask(values: list[int], h: int = H, w: int = W) -> np.ndarray:
    """A mask cycling through ``values`` so every value appears."""
    flat = np.resize(np.asarray(values, np.uint8), h * w)
    return flat.reshape(h, w)


# Cityscapes label ids covering kept classes and void ids: 7 road, 26 car, 23 sky, 0 unlabeled, 4 static, 30 trailer.
LABEL_IDS = [7, 26, 23, 0, 4, 30]
LABEL_IDS_AS_TRAIN = {7: 0, 26: 13, 23: 10, 0: 255, 4: 255, 30: 255}


def cityscapes(root: Path, label_type: str = "trainIds", splits: tuple[str, ...] = ("train", "val")) -> Path:
    for s, split in enumerate(splits):
        for i, city in enumerate(("aachen", "bonn")):
            stem = f"{city}_00000{i}_00001{s}"
            save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", image(i + 10 * s))
            if label_type == "trainIds":
                save(root / "gtFine" / split / city / f"{stem}_gtFine_labelTrainIds.png", mask([0, 1, 18, 255]))
            else:
                save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", mask(LABEL_IDS))
            # Colour masks and instance ids sit beside the label files in the real release.
            save(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", image(99))
    return root


def gta5(root: Path, flat: bool = True) -> Path:
    for i in range(3):
        sub = Path() if flat else Path("train")
        save(root / "images" / sub / f"{i:05d}.png", image(i))
        save(root / "labels" / sub / f"{i:05d}.png", mask(LABEL_IDS), mode="P")
    return root


def acdc(root: Path) -> Path:
    for c, cond in enumerate(("fog", "night")):
        for split in ("train", "val"):
            stem = f"GOPR0{c}75_frame_00000{c}"
            save(root / "rgb_anon" / cond / split / f"GOPR0{c}75" / f"{stem}_rgb_anon.png", image(c))
            save(root / "gt" / cond / split / f"GOPR0{c}75" / f"{stem}_gt_labelTrainIds.png", mask([2, 8, 255]))
    return root


def bdd100k(root: Path) -> Path:
    for i in range(2):
        path = root / "images" / "10k" / "val" / f"b{i}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image(i)).save(path, quality=90)
        save(root / "labels" / "sem_seg" / "masks" / "val" / f"b{i}.png", mask([0, 5, 255]))
    return root


def mapillary(root: Path) -> Path:
    for split in ("training", "validation"):
        for i in range(2):
            path = root / split / "images" / f"m{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image(i)).save(path)
            save(root / split / "labels" / f"m{i}.png", mask([0, 18, 255]))
    return root


def mmseg(root: Path, with_classes: bool = True) -> Path:
    for split in ("train", "val"):
        for i in range(2):
            save(root / "img_dir" / split / f"p{i}.png", image(i))
            save(root / "ann_dir" / split / f"p{i}.png", mask([0, 1, 6, 255]))  # 0 = clutter when reduced
    if with_classes:
        names = ["impervious", "building", "low_veg", "tree", "car", "clutter"]
        (root / "classes.json").write_text(json.dumps({"names": names}))
    return root


def folder(root: Path, names: tuple[str, ...] = ("sky", "road", "car"), splits: tuple[str, ...] = ("train", "val"),
           n: int = 2) -> Path:
    for split in splits:
        for i in range(n):
            save(root / "images" / split / f"f{i}.png", image(i))
            save(root / "masks" / split / f"f{i}.png", mask([0, 1, 2, 255]))
    classes = {"names": list(names), "ignore_index": 255, "palette": [[i * 40, 0, 0] for i in range(len(names))]}
    (root / "classes.json").write_text(json.dumps(classes))
    return root


# Vistas v1.2 ids: 13 road, 24 lane marking (-> road), 55 car, 65 unlabeled, 7 bike lane (ignored), 58 on rails.
VISTAS_IDS = [13, 24, 55, 65, 7, 58]
VISTAS_AS_TRAIN = {13: 0, 24: 0, 55: 13, 65: 255, 7: 255, 58: 16}


def mapillary_vistas(root: Path, v2_download: bool = False) -> Path:
    """Raw Vistas: palette PNG labels holding v1.2 class ids (in ``v1.2/labels`` for the v2.0 download)."""
    labels = Path("v1.2") / "labels" if v2_download else Path("labels")
    for split in ("training", "validation"):
        for i in range(2):
            path = root / split / "images" / f"k{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image(i)).save(path)
            save(root / split / labels / f"k{i}.png", mask(VISTAS_IDS), mode="P")
    return root


def _save_any(path: Path, seed: int, h: int = H, w: int = W) -> Path:
    """An image in the format its extension names (JPEG, PNG or WebP, any case)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".jpeg": "JPEG", ".jpg": "JPEG", ".png": "PNG", ".webp": "WEBP"}[path.suffix.lower()]
    Image.fromarray(image(seed, h, w)).save(path, format=fmt)
    return path


def imagenet(root: Path) -> Path:
    """ImageNet-style class folders with mixed extensions and sizes, plus files that are not images."""
    _save_any(root / "train" / "n01440764" / "n01440764_10026.JPEG", 0)
    _save_any(root / "train" / "n01440764" / "n01440764_10027.jpeg", 1, h=10, w=4)
    _save_any(root / "train" / "n01443537" / "n01443537_2.PNG", 2)
    _save_any(root / "train" / "n01443537" / "extra" / "n01443537_3.webp", 3)
    _save_any(root / "val" / "n01440764" / "ILSVRC2012_val_00000293.JPEG", 4)
    (root / "train" / "n01440764" / "._n01440764_10026.JPEG").write_bytes(b"resource fork")  # macOS junk
    (root / "train" / "n01440764" / "notes.txt").write_text("not an image")
    (root / "LOC_synset_mapping.txt").write_text("n01440764 tench\n")
    return root


def images(root: Path, splits: bool = False) -> Path:
    """A folder of images: flat (plus a nested subfolder) or one subfolder per split."""
    if splits:
        for s, split in enumerate(("train", "val")):
            _save_any(root / split / f"i{s}0.jpg", s)
            _save_any(root / split / "deeper" / f"i{s}1.webp", s + 5)
    else:
        _save_any(root / "a.jpg", 0)
        _save_any(root / "b.PNG", 1, h=12, w=8)
        _save_any(root / "more" / "c.webp", 2)
    return root


def image_list(root: Path) -> Path:
    """train.txt / val.txt listing images relative to the root (a comment, a blank line, a "path label" line)."""
    _save_any(root / "pool" / "a" / "0.jpg", 0)
    _save_any(root / "pool" / "b" / "1.png", 1)
    _save_any(root / "pool" / "b" / "2.webp", 2)
    (root / "train.txt").write_text("# proxy images\npool/a/0.jpg\n\npool/b/1.png 3\n")
    (root / "val.txt").write_text("pool/b/2.webp\n")
    (root / "README.txt").write_text("A proxy set for stage 1.\n")
    return root

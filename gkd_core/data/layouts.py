"""Where images and masks live in each supported dataset layout, and what the mask values mean.

A layout resolves ``(root, split)`` to a list of image/mask pairs plus a label mapping. The paths
follow the public releases described in METHOD.md ("Dataset layouts the service must read"):

- cityscapes: leftImg8bit/{split}/{city}/*_leftImg8bit.png + gtFine/{split}/{city}/*_gtFine_labelTrainIds.png
  (or *_gtFine_labelIds.png, mapped to train ids; ``label_type`` picks, "auto" prefers train ids)
- gta5: images/*.png + labels/*.png holding Cityscapes label ids (``images/{split}/`` if split folders exist)
- acdc: rgb_anon/{condition}/{split}/{seq}/*_rgb_anon.png + gt/{condition}/{split}/{seq}/*_gt_labelTrainIds.png
- bdd100k: images/10k/{split}/*.jpg + labels/sem_seg/masks/{split}/*.png (train ids)
- mapillary (converted to Cityscapes train ids): {split}/images/* + {split}/labels/*.png
  (``training``/``validation`` accepted for ``train``/``val``)
- mmseg: img_dir/{split}/* + ann_dir/{split}/*.png, classes from classes.json or ``classes=``,
  optional ``reduce_zero_label``
- folder: images/{split}/* + masks/{split}/*.png of the same stem, classes.json required

Every reader only needs a local directory, so a dataset synced from S3 into a cache dir reads the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gkd_core.data._io import IMAGE_EXTENSIONS
from gkd_core.data.cityscapes_labels import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, IGNORE_INDEX, label_id_lut
from gkd_core.errors import DatasetError

LAYOUTS: tuple[str, ...] = ("cityscapes", "gta5", "acdc", "bdd100k", "mapillary", "mmseg", "folder")
ACDC_CONDITIONS: tuple[str, ...] = ("fog", "night", "rain", "snow")
_OPTIONS: dict[str, set[str]] = {
    "cityscapes": {"label_type"},
    "gta5": set(),
    "acdc": {"condition", "label_type"},
    "bdd100k": set(),
    "mapillary": set(),
    "mmseg": {"reduce_zero_label", "classes"},
    "folder": set(),
}
_MAPILLARY_ALIASES = {"train": "training", "val": "validation", "training": "train", "validation": "val"}


@dataclass(frozen=True)
class ClassInfo:
    """Class names, the ignore value and an optional RGB palette (one colour per class)."""

    names: list[str]
    ignore_index: int = IGNORE_INDEX
    palette: list[tuple[int, int, int]] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.names)


@dataclass(frozen=True)
class Sample:
    """One key of a split: image and/or mask path (``None`` where the partner file is missing)."""

    name: str
    image: Path | None
    mask: Path | None


@dataclass(frozen=True)
class SplitListing:
    """All pairs of one split, and how to turn a raw mask into train ids."""

    layout: str
    root: Path
    split: str
    samples: list[Sample]
    classes: ClassInfo
    label_lut: np.ndarray | None = None
    reduce_zero_label: bool = False
    notes: list[str] = field(default_factory=list)

    def convert_mask(self, raw: np.ndarray) -> np.ndarray:
        """Raw label values -> int64 train ids (ignore stays ``classes.ignore_index``)."""
        if self.label_lut is not None:
            # Values above 255 cannot be label ids: they are ignored rather than wrapped around.
            raw = np.where((raw >= 0) & (raw < 256), raw, 255).astype(np.intp)
            out = self.label_lut[raw].astype(np.int64)
        else:
            out = raw.astype(np.int64)
        if self.reduce_zero_label:
            # mmseg's rule: 0 (background/clutter) -> ignore, every other id shifts down by one.
            ignore = self.classes.ignore_index
            out = np.where(out == 0, ignore, np.where(out == ignore, ignore, out - 1))
        return out

    @property
    def complete(self) -> list[Sample]:
        """The samples that have both an image and a mask."""
        return [s for s in self.samples if s.image is not None and s.mask is not None]


@dataclass(frozen=True)
class _Source:
    """One image folder and its mask folder; keys are paths relative to them minus the suffixes."""

    image_dir: Path
    mask_dir: Path
    image_suffixes: tuple[str, ...] = IMAGE_EXTENSIONS
    mask_suffixes: tuple[str, ...] = (".png",)
    recursive: bool = False
    prefix: str = ""


def _index(base: Path, suffixes: tuple[str, ...], recursive: bool) -> dict[str, Path]:
    if not base.is_dir():
        return {}
    files = base.rglob("*") if recursive else base.iterdir()
    out: dict[str, Path] = {}
    for path in files:
        if not path.is_file():
            continue
        rel = path.relative_to(base).as_posix()
        lower = rel.lower()
        for suffix in suffixes:
            if lower.endswith(suffix.lower()):
                out.setdefault(rel[: len(rel) - len(suffix)], path)
                break
    return out


def _pairs(sources: list[_Source]) -> list[Sample]:
    samples: list[Sample] = []
    for src in sources:
        images = _index(src.image_dir, src.image_suffixes, src.recursive)
        masks = _index(src.mask_dir, src.mask_suffixes, src.recursive)
        for key in sorted(images.keys() | masks.keys()):
            samples.append(Sample(name=src.prefix + key, image=images.get(key), mask=masks.get(key)))
    return samples


def _subdirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def _require_dirs(root: Path, layout: str, *relative: str) -> None:
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a directory")
    missing = [r for r in relative if not (root / r).is_dir()]
    if missing:
        found = ", ".join(_subdirs(root)[:8]) or "nothing"
        guess = detect_layout(root)
        hint = f"; it looks like the {guess!r} layout" if guess and guess != layout else ""
        raise DatasetError(
            f"{root} is not a {layout!r} dataset: missing {', '.join(m + '/' for m in missing)} (found: {found}){hint}"
        )


def read_classes_json(path: Path) -> ClassInfo:
    """Parse classes.json: ``{"names": [...], "ignore_index": 255, "palette": [[r, g, b], ...]}``.

    Raises:
        DatasetError: missing file, bad JSON, or inconsistent fields (the message says which).
    """
    if not path.is_file():
        raise DatasetError(f'{path} is missing; write {{"names": [...], "ignore_index": 255}} there')
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path} must hold a JSON object with a 'names' list")
    return class_info_from_dict(data, where=str(path))


def class_info_from_dict(data: dict[str, Any], where: str = "classes") -> ClassInfo:
    """Build ClassInfo from a classes.json-shaped dict (``classes`` accepted as alias of ``names``)."""
    names = data.get("names", data.get("classes"))
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DatasetError(f"{where}: 'names' must be a non-empty list of class names")
    ignore = data.get("ignore_index", IGNORE_INDEX)
    if not isinstance(ignore, int) or not 0 <= ignore <= 65535:
        raise DatasetError(f"{where}: 'ignore_index' must be an integer in 0..65535, got {ignore!r}")
    if ignore < len(names):
        raise DatasetError(f"{where}: ignore_index {ignore} collides with class id {ignore} ({names[ignore]!r})")
    palette_raw = data.get("palette")
    palette: list[tuple[int, int, int]] | None = None
    if palette_raw is not None:
        ok = isinstance(palette_raw, list) and len(palette_raw) == len(names)
        ok = ok and all(
            isinstance(c, list | tuple) and len(c) == 3 and all(isinstance(v, int) for v in c) for c in palette_raw
        )
        if not ok:
            raise DatasetError(f"{where}: 'palette' must list one [r, g, b] per class ({len(names)} classes)")
        palette = [(int(c[0]), int(c[1]), int(c[2])) for c in palette_raw]
    return ClassInfo(names=list(names), ignore_index=ignore, palette=palette)


_CITYSCAPES_INFO = ClassInfo(
    names=list(CITYSCAPES_CLASSES), ignore_index=IGNORE_INDEX, palette=list(CITYSCAPES_PALETTE)
)


def _label_type(mask_dirs: list[Path], train_suffix: str, id_suffix: str, label_type: str) -> str:
    if label_type not in ("auto", "trainIds", "labelIds"):
        raise DatasetError(f"label_type must be 'auto', 'trainIds' or 'labelIds', got {label_type!r}")
    if label_type != "auto":
        return label_type
    for d in mask_dirs:
        if d.is_dir() and next(d.rglob(f"*{train_suffix}"), None) is not None:
            return "trainIds"
    for d in mask_dirs:
        if d.is_dir() and next(d.rglob(f"*{id_suffix}"), None) is not None:
            return "labelIds"
    return "trainIds"


def list_splits(root: Path, layout: str, **options: Any) -> list[str]:
    """The split names present under ``root`` for ``layout`` (e.g. ["train", "val"])."""
    root = Path(root)
    _check_layout(layout, options)
    if layout == "cityscapes":
        return _subdirs(root / "leftImg8bit")
    if layout == "gta5":
        subs = _subdirs(root / "images")
        return subs or (["all"] if (root / "images").is_dir() else [])
    if layout == "acdc":
        conditions = _acdc_conditions(root, options.get("condition"))
        return sorted({s for c in conditions for s in _subdirs(root / "rgb_anon" / c)})
    if layout == "bdd100k":
        return _subdirs(root / "images" / "10k")
    if layout == "mapillary":
        return [d for d in _subdirs(root) if (root / d / "images").is_dir()]
    if layout == "mmseg":
        return _subdirs(root / "img_dir")
    return _subdirs(root / "images")


_REQUIRED_DIRS: dict[str, tuple[str, ...]] = {
    "cityscapes": ("leftImg8bit", "gtFine"),
    "gta5": ("images", "labels"),
    "acdc": ("rgb_anon", "gt"),
    "bdd100k": ("images/10k", "labels/sem_seg/masks"),
    "mmseg": ("img_dir", "ann_dir"),
    "folder": ("images", "masks"),
}


def check_structure(root: Path, layout: str) -> None:
    """Raise DatasetError (naming the missing folders and a likely layout) if ``root`` is not ``layout``."""
    root = Path(root)
    _check_layout(layout, {})
    if layout == "mapillary":
        if not root.is_dir():
            raise DatasetError(f"dataset root {root} does not exist or is not a directory")
        if not list_splits(root, layout):
            _require_dirs(root, layout, "<split>/images", "<split>/labels")
        return
    _require_dirs(root, layout, *_REQUIRED_DIRS[layout])


def _acdc_conditions(root: Path, condition: str | list[str] | None) -> list[str]:
    available = _subdirs(root / "rgb_anon")
    if condition in (None, "all"):
        return available
    wanted = [condition] if isinstance(condition, str) else list(condition)
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise DatasetError(f"acdc condition(s) {unknown} not found under {root / 'rgb_anon'}; available: {available}")
    return wanted


def _check_layout(layout: str, options: dict[str, Any]) -> None:
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown dataset layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    unknown = set(options) - _OPTIONS[layout]
    if unknown:
        allowed = ", ".join(sorted(_OPTIONS[layout])) or "none"
        raise DatasetError(f"layout {layout!r} takes no option(s) {sorted(unknown)}; allowed: {allowed}")


def list_split(root: Path, layout: str, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
    """Resolve one split of a dataset to its image/mask pairs and label mapping.

    Args:
        root: local dataset directory.
        layout: one of ``LAYOUTS``.
        split: split folder name (``train``, ``val``, ...; ``all`` for a flat gta5 folder).
        need_classes: False skips reading classes.json (unlabelled, images-only use).
        **options: layout options (``label_type``, ``condition``, ``reduce_zero_label``, ``classes``).

    Raises:
        DatasetError: unknown layout/option, wrong directory structure, missing split or classes.
    """
    root = Path(root)
    _check_layout(layout, options)
    notes: list[str] = []
    lut: np.ndarray | None = None
    reduce_zero = False
    classes = _CITYSCAPES_INFO
    if layout == "cityscapes":
        _require_dirs(root, layout, "leftImg8bit")
        _require_split(root, layout, split, root / "leftImg8bit" / split)
        mask_dir = root / "gtFine" / split
        kind = _label_type(
            [mask_dir], "_gtFine_labelTrainIds.png", "_gtFine_labelIds.png", options.get("label_type", "auto")
        )
        mask_suffix = "_gtFine_labelTrainIds.png" if kind == "trainIds" else "_gtFine_labelIds.png"
        if kind == "labelIds":
            lut = label_id_lut()
            notes.append("masks are label ids, mapped to the 19 train ids")
        sources = [_Source(root / "leftImg8bit" / split, mask_dir, ("_leftImg8bit.png",), (mask_suffix,), True)]
    elif layout == "gta5":
        _require_dirs(root, layout, "images", "labels")
        if (root / "images" / split).is_dir():
            sources = [_Source(root / "images" / split, root / "labels" / split)]
        elif split == "all" and not _subdirs(root / "images"):
            sources = [_Source(root / "images", root / "labels")]
        else:
            raise DatasetError(f"split {split!r} not found in gta5 dataset {root}; splits: {list_splits(root, layout)}")
        lut = label_id_lut()
    elif layout == "acdc":
        _require_dirs(root, layout, "rgb_anon", "gt")
        conditions = _acdc_conditions(root, options.get("condition"))
        if not any((root / "rgb_anon" / c / split).is_dir() for c in conditions):
            raise DatasetError(f"split {split!r} not found for acdc condition(s) {conditions} in {root}")
        mask_dirs = [root / "gt" / c / split for c in conditions]
        kind = _label_type(mask_dirs, "_gt_labelTrainIds.png", "_gt_labelIds.png", options.get("label_type", "auto"))
        mask_suffix = "_gt_labelTrainIds.png" if kind == "trainIds" else "_gt_labelIds.png"
        if kind == "labelIds":
            lut = label_id_lut()
        sources = [
            _Source(
                root / "rgb_anon" / c / split,
                root / "gt" / c / split,
                ("_rgb_anon.png",),
                (mask_suffix,),
                True,
                prefix=f"{c}/",
            )
            for c in conditions
        ]
    elif layout == "bdd100k":
        _require_dirs(root, layout, "images/10k", "labels/sem_seg/masks")
        _require_split(root, layout, split, root / "images" / "10k" / split)
        sources = [_Source(root / "images" / "10k" / split, root / "labels" / "sem_seg" / "masks" / split)]
    elif layout == "mapillary":
        folder = split
        if not (root / split / "images").is_dir() and (root / _MAPILLARY_ALIASES.get(split, split) / "images").is_dir():
            folder = _MAPILLARY_ALIASES[split]
        if not (root / folder / "images").is_dir():
            if not list_splits(root, layout):
                _require_dirs(root, layout, f"{split}/images", f"{split}/labels")
            raise DatasetError(
                f"split {split!r} not found in mapillary dataset {root}; splits: {list_splits(root, layout)}"
            )
        sources = [_Source(root / folder / "images", root / folder / "labels")]
    elif layout == "mmseg":
        _require_dirs(root, layout, "img_dir", "ann_dir")
        _require_split(root, layout, split, root / "img_dir" / split)
        classes = _mmseg_classes(root, options.get("classes"), need_classes)
        reduce_zero = bool(options.get("reduce_zero_label", False))
        sources = [_Source(root / "img_dir" / split, root / "ann_dir" / split)]
    else:  # folder
        _require_dirs(root, layout, "images", "masks")
        _require_split(root, layout, split, root / "images" / split)
        if need_classes:
            classes = read_classes_json(root / "classes.json")
        sources = [_Source(root / "images" / split, root / "masks" / split)]
    return SplitListing(
        layout=layout,
        root=root,
        split=split,
        samples=_pairs(sources),
        classes=classes,
        label_lut=lut,
        reduce_zero_label=reduce_zero,
        notes=notes,
    )


def _require_split(root: Path, layout: str, split: str, path: Path) -> None:
    if not path.is_dir():
        raise DatasetError(
            f"split {split!r} not found in {layout} dataset {root} (no {path}); splits: {list_splits(root, layout)}"
        )


def _mmseg_classes(root: Path, classes: list[str] | None, need: bool) -> ClassInfo:
    if classes is not None:
        return class_info_from_dict({"names": list(classes)}, where="classes option")
    if (root / "classes.json").is_file() or need:
        if not (root / "classes.json").is_file():
            raise DatasetError(f"mmseg dataset {root} has no classes.json; add one or pass classes=[...]")
        return read_classes_json(root / "classes.json")
    return ClassInfo(names=["unknown"])


_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cityscapes", ("leftImg8bit",)),
    ("acdc", ("rgb_anon", "gt")),
    ("bdd100k", ("images/10k",)),
    ("mmseg", ("img_dir", "ann_dir")),
    ("folder", ("images", "masks")),
    ("gta5", ("images", "labels")),
)


def detect_layout(root: Path) -> str | None:
    """Guess the layout of ``root`` from its top-level folders (None when nothing fits)."""
    root = Path(root)
    for layout, markers in _MARKERS:
        if all((root / m).is_dir() for m in markers):
            return layout
    if any((root / d / "images").is_dir() and (root / d / "labels").is_dir() for d in _subdirs(root)):
        return "mapillary"
    return None

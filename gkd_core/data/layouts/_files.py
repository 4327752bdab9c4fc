"""File-system helpers shared by the layouts: pairing images with masks, split folders, structure errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gkd_core.data._io import IMAGE_EXTENSIONS
from gkd_core.data.layouts._listing import Sample
from gkd_core.data.layouts._registry import detect_layout
from gkd_core.errors import DatasetError

LABEL_TYPES: tuple[str, ...] = ("auto", "trainIds", "labelIds")


@dataclass(frozen=True)
class PairSource:
    """One image folder and its mask folder; keys are paths relative to them minus the suffixes."""

    image_dir: Path
    mask_dir: Path
    image_suffixes: tuple[str, ...] = IMAGE_EXTENSIONS
    mask_suffixes: tuple[str, ...] = (".png",)
    recursive: bool = False
    prefix: str = ""


def index_files(base: Path, suffixes: tuple[str, ...], recursive: bool) -> dict[str, Path]:
    """``{relative path minus suffix: path}`` of the files under ``base`` ending in one of ``suffixes``
    (case-insensitive; the first suffix that matches is stripped)."""
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


def pair_samples(sources: list[PairSource]) -> list[Sample]:
    """Samples keyed by name, sorted per source; a missing partner file leaves ``None``."""
    samples: list[Sample] = []
    for src in sources:
        images = index_files(src.image_dir, src.image_suffixes, src.recursive)
        masks = index_files(src.mask_dir, src.mask_suffixes, src.recursive)
        for key in sorted(images.keys() | masks.keys()):
            samples.append(Sample(name=src.prefix + key, image=images.get(key), mask=masks.get(key)))
    return samples


def subdirs(path: Path) -> list[str]:
    """Sorted names of the folders directly inside ``path`` (empty when it is not a folder)."""
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def require_root(root: Path) -> None:
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} does not exist or is not a directory")


def require_dirs(root: Path, layout: str, *relative: str) -> None:
    """Raise DatasetError naming the missing folders (and a likely layout) unless all ``relative`` exist."""
    require_root(root)
    missing = [r for r in relative if not (root / r).is_dir()]
    if missing:
        found = ", ".join(subdirs(root)[:8]) or "nothing"
        guess = detect_layout(root)
        hint = f"; it looks like the {guess!r} layout" if guess and guess != layout else ""
        raise DatasetError(
            f"{root} is not a {layout!r} dataset: missing {', '.join(m + '/' for m in missing)} (found: {found}){hint}"
        )


def require_split(root: Path, layout: str, split: str, path: Path, splits: list[str]) -> None:
    """Raise DatasetError "split ... not found" (listing ``splits``) unless ``path`` is a folder."""
    if not path.is_dir():
        raise DatasetError(f"split {split!r} not found in {layout} dataset {root} (no {path}); splits: {splits}")


def resolve_label_type(mask_dirs: list[Path], train_suffix: str, id_suffix: str, label_type: str) -> str:
    """"trainIds" or "labelIds": ``label_type`` itself, or for "auto" whichever files exist (train ids first)."""
    if label_type not in LABEL_TYPES:
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

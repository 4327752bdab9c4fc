"""Dataset validation: a JSON-ready report of what is wrong, before any job spends GPU time on it.

Every image/mask pairing and every file header (sizes) is checked; decoding label files to check
their values can be sampled (``label_sample``) so a 25k-image dataset validates in seconds.
Images-only layouts (imagenet, images, image_list) are checked for readable image headers and size
statistics; their report says ``"labels": false`` and no label file is ever read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gkd_core.data._io import image_size, load_image, load_mask
from gkd_core.data.layouts import ClassInfo, SplitListing, check_structure, get_layout, list_split, list_splits
from gkd_core.errors import DatasetError

PROBLEM_KINDS: tuple[str, ...] = (
    "layout",
    "missing_split",
    "empty_split",
    "missing_image",
    "missing_mask",
    "size_mismatch",
    "bad_label",
    "unreadable",
)
_MAX_STORED_PER_KIND = 200  # a report for a broken 100k-image dataset must stay small


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the dataset: ``kind`` (see PROBLEM_KINDS), where, and a readable detail."""

    kind: str
    split: str | None
    name: str | None
    detail: str

    def __str__(self) -> str:
        where = "/".join(p for p in (self.split, self.name) if p)
        return f"{self.kind}{' ' + where if where else ''}: {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "split": self.split, "name": self.name, "detail": self.detail}


@dataclass
class SplitReport:
    """Counts for one split: files found, complete pairs, how many masks were decoded, and image sizes.

    ``image_size`` is ``{"count", "width": {"min", "max", "median"}, "height": {...}}`` over the image
    headers read (every image of an images-only split; the pairs of a labelled one), None if none.
    """

    images: int = 0
    masks: int = 0
    pairs: int = 0
    masks_checked: int = 0
    label_values: list[int] = field(default_factory=list)
    image_size: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "masks": self.masks,
            "pairs": self.pairs,
            "masks_checked": self.masks_checked,
            "label_values": self.label_values,
            "image_size": self.image_size,
        }


def _size_stats(sizes: Sequence[tuple[int, int]]) -> dict[str, Any] | None:
    if not sizes:
        return None
    hw = np.asarray(sizes, dtype=np.int64)

    def stats(values: np.ndarray) -> dict[str, Any]:
        return {"min": int(values.min()), "max": int(values.max()), "median": float(np.median(values))}

    return {"count": len(sizes), "width": stats(hw[:, 1]), "height": stats(hw[:, 0])}


@dataclass
class ValidationReport:
    """The result of ``validate_dataset``; ``ok`` is True when no problem was found."""

    root: str
    layout: str
    labels: bool = True
    classes: ClassInfo | None = None
    splits: dict[str, SplitReport] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    problem_counts: Counter[str] = field(default_factory=Counter)
    label_sample: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problem_counts

    def add(self, kind: str, split: str | None, name: str | None, detail: str) -> None:
        self.problem_counts[kind] += 1
        if self.problem_counts[kind] <= _MAX_STORED_PER_KIND:
            self.problems.append(Problem(kind, split, name, detail))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the service stores it on the Dataset row)."""
        return {
            "root": self.root,
            "layout": self.layout,
            "labels": self.labels,
            "ok": self.ok,
            "classes": None
            if self.classes is None
            else {
                "names": self.classes.names,
                "ignore_index": self.classes.ignore_index,
                "palette": None if self.classes.palette is None else [list(c) for c in self.classes.palette],
            },
            "splits": {name: rep.to_dict() for name, rep in self.splits.items()},
            "problem_counts": dict(self.problem_counts),
            "problems": [p.to_dict() for p in self.problems],
            "label_sample": self.label_sample,
        }

    def summary(self, limit: int = 5) -> str:
        """One paragraph: the counts per kind and the first ``limit`` problems."""
        if self.ok:
            unit = "pairs" if self.labels else "images"
            counts = ", ".join(f"{s}: {r.pairs if self.labels else r.images} {unit}" for s, r in self.splits.items())
            kind = "" if self.labels else " (images only)"
            return f"{self.layout} dataset{kind} {self.root} is valid ({counts})"
        counts = ", ".join(f"{n} {k}" for k, n in self.problem_counts.items())
        first = "; ".join(str(p) for p in self.problems[:limit])
        more = sum(self.problem_counts.values()) - min(limit, len(self.problems))
        return f"{self.layout} dataset {self.root} has problems ({counts}): {first}" + (
            f"; and {more} more" if more > 0 else ""
        )

    def raise_for_problems(self, limit: int = 5) -> None:
        """Raise DatasetError naming the first ``limit`` problems; do nothing when ``ok``."""
        if not self.ok:
            raise DatasetError(self.summary(limit))


def _allowed_raw_values(listing: SplitListing) -> set[int]:
    classes = listing.classes
    if listing.raw_values is not None:
        return set(listing.raw_values)
    if listing.label_lut is not None:
        return set(range(len(listing.label_lut)))
    allowed = set(range(classes.num_classes)) | {classes.ignore_index}
    if listing.reduce_zero_label:
        allowed |= {classes.num_classes}  # raw ids are 1..K after reserving 0 for "ignore"
    return allowed


def _sample_indices(n: int, k: int | None) -> list[int]:
    if k is None or k >= n:
        return list(range(n))
    return sorted({round(float(i)) for i in np.linspace(0, n - 1, num=max(k, 1))})


def validate_dataset(
    root: str | Path,
    layout: str,
    splits: list[str] | None = None,
    *,
    label_sample: int | None = 500,
    deep: bool = False,
    on_file: Callable[[], None] | None = None,
    **options: Any,
) -> ValidationReport:
    """Check a dataset directory and report every problem found.

    Args:
        root: local dataset directory.
        layout: a registered layout name (``LAYOUTS``).
        splits: splits to check; None checks every split found.
        label_sample: decode at most this many label files per split (evenly spaced) to check their
            values; None decodes all. Pairings and sizes (file headers) are always checked for every file.
            Images-only layouts have no labels: every image header is read and sizes summarised.
        deep: also decode every image fully (catches truncated files the header read misses).
        on_file: called before each image (or pair) is checked; what it raises ends the validation, so a
            caller can abandon a big set's validation that nobody waits for any more.
        **options: layout options, as for ``open_dataset``.

    Raises:
        DatasetError: only for an unknown layout name; dataset problems go into the report.
    """
    labelled = get_layout(layout).labels  # an unknown name raises here, listing the registered layouts
    root = Path(root)
    report = ValidationReport(root=str(root), layout=layout, labels=labelled, label_sample=label_sample)
    try:
        check_structure(root, layout)
        names = list(splits) if splits is not None else list_splits(root, layout, **options)
    except DatasetError as exc:
        report.add("layout", None, None, str(exc))
        return report
    if not names:
        report.add("layout", None, None, f"no splits found in {root} for layout {layout!r}")
    for split in names:
        try:
            listing = list_split(root, layout, split, need_classes=labelled, **options)
        except DatasetError as exc:
            kind = "missing_split" if f"split {split!r} not found" in str(exc) else "layout"
            report.add(kind, split, None, str(exc))
            continue
        if labelled:
            report.classes = listing.classes
            report.splits[split] = _check_split(listing, report, label_sample, deep, on_file)
        else:
            report.splits[split] = _check_image_split(listing, report, deep, on_file)
    return report


def _check_image_split(
    listing: SplitListing, report: ValidationReport, deep: bool, on_file: Callable[[], None] | None
) -> SplitReport:
    """Images-only split: every entry has a file, every header (or with ``deep``, every image) reads."""
    split = listing.split
    rep = SplitReport(images=sum(s.image is not None for s in listing.samples))
    if not listing.samples:
        report.add("empty_split", split, None, f"no images in split {split!r}")
    sizes: list[tuple[int, int]] = []
    for sample in listing.samples:
        if on_file is not None:
            on_file()
        if sample.image is None:
            report.add("missing_image", split, sample.name, f"entry {sample.name!r} of split {split!r} has no file")
            continue
        try:
            hw = load_image(sample.image).shape[:2] if deep else image_size(sample.image)
        except DatasetError as exc:
            report.add("unreadable", split, sample.name, str(exc))
            continue
        sizes.append((int(hw[0]), int(hw[1])))
    rep.image_size = _size_stats(sizes)
    return rep


def _check_split(
    listing: SplitListing,
    report: ValidationReport,
    label_sample: int | None,
    deep: bool,
    on_file: Callable[[], None] | None,
) -> SplitReport:
    split = listing.split
    rep = SplitReport()
    rep.images = sum(s.image is not None for s in listing.samples)
    rep.masks = sum(s.mask is not None for s in listing.samples)
    if rep.images == 0:
        report.add("empty_split", split, None, f"no images in split {split!r}")
    sized: list[int] = []
    sizes: list[tuple[int, int]] = []
    for i, sample in enumerate(listing.samples):
        if on_file is not None:
            on_file()
        if sample.image is None:
            report.add("missing_image", split, sample.name, f"mask {sample.mask} has no image")
            continue
        if sample.mask is None:
            report.add("missing_mask", split, sample.name, f"image {sample.image} has no mask")
            continue
        rep.pairs += 1
        try:
            img_hw = load_image(sample.image).shape[:2] if deep else image_size(sample.image)
        except DatasetError as exc:
            report.add("unreadable", split, sample.name, str(exc))
            continue
        sizes.append((int(img_hw[0]), int(img_hw[1])))
        try:
            mask_hw = image_size(sample.mask)
        except DatasetError as exc:
            report.add("unreadable", split, sample.name, str(exc))
            continue
        if tuple(img_hw) != tuple(mask_hw):
            report.add(
                "size_mismatch",
                split,
                sample.name,
                f"image is {img_hw[0]}x{img_hw[1]} but mask is {mask_hw[0]}x{mask_hw[1]} (HxW)",
            )
            continue
        sized.append(i)
    allowed = _allowed_raw_values(listing)
    if listing.raw_values is not None:
        expected = f"the raw label ids this layout reads ({min(allowed)}..{max(allowed)}, before mapping)"
    else:
        expected = f"the class set (0..{listing.classes.num_classes - 1} and ignore {listing.classes.ignore_index})"
    seen: set[int] = set()
    for j in _sample_indices(len(sized), label_sample):
        sample = listing.samples[sized[j]]
        assert sample.mask is not None
        try:
            values = np.unique(load_mask(sample.mask))
        except DatasetError as exc:
            report.add("unreadable", split, sample.name, str(exc))
            continue
        rep.masks_checked += 1
        present = {int(v) for v in values}
        seen |= present
        bad = sorted(present - allowed)
        if bad:
            report.add(
                "bad_label",
                split,
                sample.name,
                f"mask {sample.mask} holds value(s) {bad[:10]} outside {expected}",
            )
    rep.label_values = sorted(seen)
    rep.image_size = _size_stats(sizes)
    return rep

"""What a layout resolves a split to: samples (image/mask paths), class names and the raw-label mapping."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gkd_core.data.cityscapes_labels import IGNORE_INDEX
from gkd_core.data.layouts._registry import list_layouts
from gkd_core.errors import DatasetError


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
    """All samples of one split, and how to turn a raw mask into train ids.

    ``labelled`` is False for images-only layouts (every ``Sample.mask`` is None and ``classes`` is
    empty). ``raw_values``, when set, are the values a raw label file may hold before ``label_lut``
    maps them (validation flags anything else); None means the class ids and the ignore index.
    """

    layout: str
    root: Path
    split: str
    samples: list[Sample]
    classes: ClassInfo
    label_lut: np.ndarray | None = None
    reduce_zero_label: bool = False
    notes: list[str] = field(default_factory=list)
    labelled: bool = True
    raw_values: frozenset[int] | None = None

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

    def require_labels(self) -> None:
        """Raise DatasetError when this split has no labels (an images-only layout)."""
        if not self.labelled:
            raise images_only_error(self.layout, self.root)

    @property
    def complete(self) -> list[Sample]:
        """The samples that have both an image and a mask."""
        return [s for s in self.samples if s.image is not None and s.mask is not None]


def images_only_error(layout: str, root: Path) -> DatasetError:
    """The error for reading labels from an images-only set: what it can serve and what to use instead."""
    labelled = ", ".join(list_layouts(labels=True))
    return DatasetError(
        f"{root} is an images-only set (layout {layout!r}) and has no labels: it can serve stage 1 "
        f"(distillation, the proxy step, extra unlabelled images) only; stage 2 training and evaluation "
        f"need a labelled layout ({labelled})"
    )

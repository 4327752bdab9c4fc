"""Mapillary Vistas (Neuhold et al., ICCV 2017) with labels converted to Cityscapes train ids.

::

    {split}/images/*.jpg      {split}/labels/*.png

``train``/``val`` also find the release's ``training``/``validation`` folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gkd_core.data.layouts._base import Layout
from gkd_core.data.layouts._classes import CITYSCAPES_INFO
from gkd_core.data.layouts._files import PairSource, pair_samples, require_dirs, require_root, subdirs
from gkd_core.data.layouts._listing import SplitListing
from gkd_core.data.layouts._registry import register_layout
from gkd_core.errors import DatasetError

_ALIASES = {"train": "training", "val": "validation", "training": "train", "validation": "val"}


@register_layout
class Mapillary(Layout):
    name = "mapillary"
    description = "Mapillary Vistas converted to Cityscapes train ids: {split}/images/, {split}/labels/"

    def splits(self, root: Path, **options: Any) -> list[str]:
        return [d for d in subdirs(root) if (root / d / "images").is_dir()]

    def check_structure(self, root: Path) -> None:
        require_root(root)
        if not self.splits(root):
            require_dirs(root, self.name, "<split>/images", "<split>/labels")

    def list_split(self, root: Path, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
        folder = split
        if not (root / split / "images").is_dir() and (root / _ALIASES.get(split, split) / "images").is_dir():
            folder = _ALIASES[split]
        if not (root / folder / "images").is_dir():
            if not self.splits(root):
                require_dirs(root, self.name, f"{split}/images", f"{split}/labels")
            raise DatasetError(f"split {split!r} not found in mapillary dataset {root}; splits: {self.splits(root)}")
        source = PairSource(root / folder / "images", root / folder / "labels")
        return SplitListing(
            layout=self.name, root=root, split=split, samples=pair_samples([source]), classes=CITYSCAPES_INFO
        )

    def detect(self, root: Path) -> float:
        # Split folders each holding images/ and labels/: generic, so below the other labelled layouts.
        split_dirs = (root / d for d in subdirs(root))
        return 0.3 if any((d / "images").is_dir() and (d / "labels").is_dir() for d in split_dirs) else 0.0

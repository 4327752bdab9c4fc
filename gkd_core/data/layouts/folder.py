"""The generic layout (the synthetic benchmark writes it): images/ and masks/ per split plus classes.json.

::

    images/{split}/<stem>.<png|jpg|...>      masks/{split}/<stem>.png      classes.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gkd_core.data.layouts._base import Layout
from gkd_core.data.layouts._classes import CITYSCAPES_INFO, read_classes_json
from gkd_core.data.layouts._files import PairSource, pair_samples, require_dirs, require_split, subdirs
from gkd_core.data.layouts._listing import SplitListing
from gkd_core.data.layouts._registry import register_layout


@register_layout
class Folder(Layout):
    name = "folder"
    description = "generic: images/{split}/*, masks/{split}/*.png of the same stem, classes.json"
    required_dirs = ("images", "masks")

    def splits(self, root: Path, **options: Any) -> list[str]:
        return subdirs(root / "images")

    def list_split(self, root: Path, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
        require_dirs(root, self.name, *self.required_dirs)
        require_split(root, self.name, split, root / "images" / split, self.splits(root))
        # Images-only reads need no classes.json; the listing then carries the Cityscapes set as before.
        classes = read_classes_json(root / "classes.json") if need_classes else CITYSCAPES_INFO
        source = PairSource(root / "images" / split, root / "masks" / split)
        return SplitListing(layout=self.name, root=root, split=split, samples=pair_samples([source]), classes=classes)

    def detect(self, root: Path) -> float:
        return 0.5 if (root / "images").is_dir() and (root / "masks").is_dir() else 0.0

"""GTA5 (Richter et al., ECCV 2016): images/*.png with labels/*.png holding Cityscapes label ids.

The release is flat (split name ``all``); ``images/{split}/`` and ``labels/{split}/`` folders are read
when they exist. Labels are palette PNGs whose indices are label ids, mapped to the 19 train ids.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gkd_core.data.cityscapes_labels import label_id_lut
from gkd_core.data.layouts._base import Layout
from gkd_core.data.layouts._classes import CITYSCAPES_INFO, CITYSCAPES_LABEL_ID_VALUES
from gkd_core.data.layouts._files import PairSource, pair_samples, require_dirs, subdirs
from gkd_core.data.layouts._listing import SplitListing
from gkd_core.data.layouts._registry import register_layout
from gkd_core.errors import DatasetError


@register_layout
class GTA5(Layout):
    name = "gta5"
    description = "GTA5: images/ and labels/ (Cityscapes label ids), flat (split 'all') or per split"
    required_dirs = ("images", "labels")

    def splits(self, root: Path, **options: Any) -> list[str]:
        subs = subdirs(root / "images")
        return subs or (["all"] if (root / "images").is_dir() else [])

    def list_split(self, root: Path, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
        require_dirs(root, self.name, *self.required_dirs)
        if (root / "images" / split).is_dir():
            source = PairSource(root / "images" / split, root / "labels" / split)
        elif split == "all" and not subdirs(root / "images"):
            source = PairSource(root / "images", root / "labels")
        else:
            raise DatasetError(f"split {split!r} not found in gta5 dataset {root}; splits: {self.splits(root)}")
        return SplitListing(
            layout=self.name,
            root=root,
            split=split,
            samples=pair_samples([source]),
            classes=CITYSCAPES_INFO,
            label_lut=label_id_lut(),
            raw_values=CITYSCAPES_LABEL_ID_VALUES,
        )

    def detect(self, root: Path) -> float:
        # The most generic labelled pair: bdd100k and folder trees also hold images/ (and labels/).
        return 0.4 if (root / "images").is_dir() and (root / "labels").is_dir() else 0.0

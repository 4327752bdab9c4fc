"""Cityscapes (Cordts et al., CVPR 2016): leftImg8bit/ images with gtFine/ train-id or label-id masks.

::

    leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelTrainIds.png   (or _gtFine_labelIds.png)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gkd_core.data.cityscapes_labels import label_id_lut
from gkd_core.data.layouts._base import Layout, LayoutOption
from gkd_core.data.layouts._classes import CITYSCAPES_INFO, CITYSCAPES_LABEL_ID_VALUES
from gkd_core.data.layouts._files import (
    LABEL_TYPES,
    PairSource,
    pair_samples,
    require_dirs,
    require_split,
    resolve_label_type,
    subdirs,
)
from gkd_core.data.layouts._listing import SplitListing
from gkd_core.data.layouts._registry import register_layout

_TRAIN_IDS = "_gtFine_labelTrainIds.png"
_LABEL_IDS = "_gtFine_labelIds.png"

LABEL_TYPE_OPTION = LayoutOption(
    "label_type",
    "which mask files to read: trainIds (19 train ids), labelIds (34 label ids, mapped to train ids), "
    "or auto (train ids when any exist)",
    choices=LABEL_TYPES,
    default="auto",
)


@register_layout
class Cityscapes(Layout):
    name = "cityscapes"
    description = "Cityscapes: leftImg8bit/{split}/{city}/ images, gtFine/ train-id or label-id masks"
    options = (LABEL_TYPE_OPTION,)
    required_dirs = ("leftImg8bit", "gtFine")

    def splits(self, root: Path, **options: Any) -> list[str]:
        return subdirs(root / "leftImg8bit")

    def list_split(self, root: Path, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
        # Only the image folder is required: an images-only read works without gtFine/.
        require_dirs(root, self.name, "leftImg8bit")
        require_split(root, self.name, split, root / "leftImg8bit" / split, self.splits(root))
        mask_dir = root / "gtFine" / split
        kind = resolve_label_type([mask_dir], _TRAIN_IDS, _LABEL_IDS, options.get("label_type", "auto"))
        notes = [] if kind == "trainIds" else ["masks are label ids, mapped to the 19 train ids"]
        source = PairSource(
            root / "leftImg8bit" / split,
            mask_dir,
            ("_leftImg8bit.png",),
            (_TRAIN_IDS if kind == "trainIds" else _LABEL_IDS,),
            recursive=True,
        )
        return SplitListing(
            layout=self.name,
            root=root,
            split=split,
            samples=pair_samples([source]),
            classes=CITYSCAPES_INFO,
            label_lut=None if kind == "trainIds" else label_id_lut(),
            notes=notes,
            raw_values=None if kind == "trainIds" else CITYSCAPES_LABEL_ID_VALUES,
        )

    def detect(self, root: Path) -> float:
        return 1.0 if (root / "leftImg8bit").is_dir() else 0.0

"""Mapillary Vistas (Neuhold et al., ICCV 2017): Cityscapes train-id labels, or the raw v1.2 labels.

::

    {split}/images/*.jpg      {split}/labels/*.png      ({split}/v1.2/labels/*.png in the v2.0 download)

``train``/``val`` also find the release's ``training``/``validation`` folders. ``label_type``:
"trainIds" (default) reads labels already converted to the 19 Cityscapes train ids; "vistas" reads
the release's v1.2 labels (66 class ids) and maps them with the fixed table in
``gkd_core/data/vistas_labels.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gkd_core.data.layouts._base import Layout, LayoutOption
from gkd_core.data.layouts._classes import CITYSCAPES_INFO
from gkd_core.data.layouts._files import PairSource, pair_samples, require_dirs, require_root, subdirs
from gkd_core.data.layouts._listing import SplitListing
from gkd_core.data.layouts._registry import register_layout
from gkd_core.data.vistas_labels import VISTAS_V12_CLASSES, vistas_lut
from gkd_core.errors import DatasetError

_ALIASES = {"train": "training", "val": "validation", "training": "train", "validation": "val"}
_VISTAS_IDS = frozenset(range(len(VISTAS_V12_CLASSES)))


@register_layout
class Mapillary(Layout):
    name = "mapillary"
    description = "Mapillary Vistas: {split}/images/, {split}/labels/ (Cityscapes train ids or raw v1.2 ids)"
    options = (
        LayoutOption(
            "label_type",
            "trainIds: labels already converted to the 19 Cityscapes train ids; vistas: the release's "
            "v1.2 labels (66 class ids), mapped to the 19 train ids by a fixed table",
            choices=("trainIds", "vistas"),
            default="trainIds",
        ),
    )

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
        vistas = options.get("label_type", "trainIds") == "vistas"
        labels = root / folder / "labels"
        if vistas and not labels.is_dir() and (root / folder / "v1.2" / "labels").is_dir():
            labels = root / folder / "v1.2" / "labels"
        return SplitListing(
            layout=self.name,
            root=root,
            split=split,
            samples=pair_samples([PairSource(root / folder / "images", labels)]),
            classes=CITYSCAPES_INFO,
            label_lut=vistas_lut() if vistas else None,
            notes=[f"masks are Vistas v1.2 ids ({labels}), mapped to the 19 train ids"] if vistas else [],
            raw_values=_VISTAS_IDS if vistas else None,
        )

    def detect(self, root: Path) -> float:
        # Split folders each holding images/ and labels/: generic, so below the other labelled layouts.
        return 0.3 if any(_has_labels(root / d) for d in subdirs(root)) else 0.0


def _has_labels(split_dir: Path) -> bool:
    labels = (split_dir / "labels").is_dir() or (split_dir / "v1.2" / "labels").is_dir()
    return (split_dir / "images").is_dir() and labels

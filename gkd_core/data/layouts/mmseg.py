"""mmsegmentation's custom-dataset layout (ISPRS Potsdam, Vaihingen, ...): img_dir/ and ann_dir/ per split.

::

    img_dir/{split}/*         ann_dir/{split}/*.png         classes.json (or the ``classes`` option)

``reduce_zero_label`` applies mmseg's rule: 0 (background/clutter) becomes ignore, the rest shift down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gkd_core.data.layouts._base import Layout, LayoutOption
from gkd_core.data.layouts._classes import class_info_from_dict, read_classes_json
from gkd_core.data.layouts._files import PairSource, pair_samples, require_dirs, require_split, subdirs
from gkd_core.data.layouts._listing import ClassInfo, SplitListing
from gkd_core.data.layouts._registry import register_layout
from gkd_core.errors import DatasetError


@register_layout
class MMSeg(Layout):
    name = "mmseg"
    description = "mmseg-style (Potsdam, Vaihingen): img_dir/{split}/, ann_dir/{split}/*.png, classes.json"
    options = (
        LayoutOption("reduce_zero_label", "true: 0 becomes ignore and every other id shifts down by one",
                     default=False),
        LayoutOption("classes", "list of class names (instead of classes.json)"),
    )
    required_dirs = ("img_dir", "ann_dir")

    def splits(self, root: Path, **options: Any) -> list[str]:
        return subdirs(root / "img_dir")

    def list_split(self, root: Path, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
        require_dirs(root, self.name, *self.required_dirs)
        require_split(root, self.name, split, root / "img_dir" / split, self.splits(root))
        source = PairSource(root / "img_dir" / split, root / "ann_dir" / split)
        return SplitListing(
            layout=self.name,
            root=root,
            split=split,
            samples=pair_samples([source]),
            classes=_classes(root, options.get("classes"), need_classes),
            reduce_zero_label=bool(options.get("reduce_zero_label", False)),
        )

    def detect(self, root: Path) -> float:
        return 1.0 if (root / "img_dir").is_dir() and (root / "ann_dir").is_dir() else 0.0


def _classes(root: Path, classes: list[str] | None, need: bool) -> ClassInfo:
    if classes is not None:
        return class_info_from_dict({"names": list(classes)}, where="classes option")
    path = root / "classes.json"
    if path.is_file():
        return read_classes_json(path)
    if need:
        raise DatasetError(f"mmseg dataset {root} has no classes.json; add one or pass classes=[...]")
    return ClassInfo(names=["unknown"])

"""ACDC (Sakaridis et al., ICCV 2021): adverse-condition driving images with Cityscapes train-id masks.

::

    rgb_anon/{condition}/{split}/{sequence}/{name}_rgb_anon.png
    gt/{condition}/{split}/{sequence}/{name}_gt_labelTrainIds.png          (or _gt_labelIds.png)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gkd_core.data.cityscapes_labels import label_id_lut
from gkd_core.data.layouts._base import Layout, LayoutOption
from gkd_core.data.layouts._classes import CITYSCAPES_INFO, CITYSCAPES_LABEL_ID_VALUES
from gkd_core.data.layouts._files import PairSource, pair_samples, require_dirs, resolve_label_type, subdirs
from gkd_core.data.layouts._listing import SplitListing
from gkd_core.data.layouts._registry import register_layout
from gkd_core.data.layouts.cityscapes import LABEL_TYPE_OPTION
from gkd_core.errors import DatasetError

ACDC_CONDITIONS: tuple[str, ...] = ("fog", "night", "rain", "snow")
_TRAIN_IDS = "_gt_labelTrainIds.png"
_LABEL_IDS = "_gt_labelIds.png"


@register_layout
class ACDC(Layout):
    name = "acdc"
    description = "ACDC: rgb_anon/{condition}/{split}/ images, gt/{condition}/{split}/ train-id masks"
    options = (
        LayoutOption(
            "condition",
            "a condition folder (fog, night, rain, snow), a list of them, or all (every condition folder)",
            default="all",
        ),
        LABEL_TYPE_OPTION,
    )
    required_dirs = ("rgb_anon", "gt")

    def splits(self, root: Path, **options: Any) -> list[str]:
        conditions = _conditions(root, options.get("condition"))
        return sorted({s for c in conditions for s in subdirs(root / "rgb_anon" / c)})

    def list_split(self, root: Path, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
        require_dirs(root, self.name, *self.required_dirs)
        conditions = _conditions(root, options.get("condition"))
        if not any((root / "rgb_anon" / c / split).is_dir() for c in conditions):
            raise DatasetError(f"split {split!r} not found for acdc condition(s) {conditions} in {root}")
        mask_dirs = [root / "gt" / c / split for c in conditions]
        kind = resolve_label_type(mask_dirs, _TRAIN_IDS, _LABEL_IDS, options.get("label_type", "auto"))
        suffix = _TRAIN_IDS if kind == "trainIds" else _LABEL_IDS
        sources = [
            PairSource(
                root / "rgb_anon" / c / split,
                root / "gt" / c / split,
                ("_rgb_anon.png",),
                (suffix,),
                recursive=True,
                prefix=f"{c}/",
            )
            for c in conditions
        ]
        return SplitListing(
            layout=self.name,
            root=root,
            split=split,
            samples=pair_samples(sources),
            classes=CITYSCAPES_INFO,
            label_lut=None if kind == "trainIds" else label_id_lut(),
            raw_values=None if kind == "trainIds" else CITYSCAPES_LABEL_ID_VALUES,
        )

    def detect(self, root: Path) -> float:
        return 1.0 if (root / "rgb_anon").is_dir() and (root / "gt").is_dir() else 0.0


def _conditions(root: Path, condition: str | list[str] | None) -> list[str]:
    available = subdirs(root / "rgb_anon")
    if condition in (None, "all"):
        return available
    wanted = [condition] if isinstance(condition, str) else list(condition or [])
    unknown = [c for c in wanted if c not in available]
    if unknown:
        raise DatasetError(f"acdc condition(s) {unknown} not found under {root / 'rgb_anon'}; available: {available}")
    return wanted

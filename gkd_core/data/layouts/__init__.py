"""Where images and masks live in each supported dataset layout, and what the mask values mean.

A layout resolves ``(root, split)`` to a list of image/mask pairs plus a label mapping. The paths
follow the public releases described in METHOD.md ("Dataset layouts the service must read"); each
layout is one module here (``cityscapes.py``, ``gta5.py``, ...) defining a ``Layout`` subclass
registered with ``@register_layout``. The functions below look the layout up in that registry and
check its options; nothing picks a layout by comparing names.

Every reader only needs a local directory, so a dataset synced from S3 into a cache dir reads the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Built-in layouts register on import, in this order (the order of LAYOUTS).
# isort: off
from gkd_core.data.layouts import cityscapes  # noqa: F401
from gkd_core.data.layouts import gta5  # noqa: F401
from gkd_core.data.layouts import acdc  # noqa: F401
from gkd_core.data.layouts import bdd100k  # noqa: F401
from gkd_core.data.layouts import mapillary  # noqa: F401
from gkd_core.data.layouts import mmseg  # noqa: F401
from gkd_core.data.layouts import folder  # noqa: F401
from gkd_core.data.layouts import imagenet  # noqa: F401
from gkd_core.data.layouts import images  # noqa: F401
from gkd_core.data.layouts import image_list  # noqa: F401
# isort: on
from gkd_core.data.layouts._base import Layout, LayoutOption
from gkd_core.data.layouts._classes import class_info_from_dict, read_classes_json
from gkd_core.data.layouts._listing import ClassInfo, Sample, SplitListing
from gkd_core.data.layouts._registry import detect_layout, get_layout, layout_catalogue, list_layouts, register_layout
from gkd_core.data.layouts.acdc import ACDC_CONDITIONS

# The built-in layout names, in registration order; ``list_layouts()`` also sees layouts registered later.
LAYOUTS: tuple[str, ...] = tuple(list_layouts())


def list_splits(root: Path, layout: str, **options: Any) -> list[str]:
    """The split names present under ``root`` for ``layout`` (e.g. ["train", "val"])."""
    lay = get_layout(layout)
    lay.check_options(options)
    return lay.splits(Path(root), **options)


def check_structure(root: Path, layout: str) -> None:
    """Raise DatasetError (naming the missing folders and a likely layout) if ``root`` is not ``layout``."""
    get_layout(layout).check_structure(Path(root))


def list_split(root: Path, layout: str, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
    """Resolve one split of a dataset to its image/mask pairs and label mapping.

    Args:
        root: local dataset directory.
        layout: a registered layout name (``LAYOUTS``, ``list_layouts()``).
        split: split folder name (``train``, ``val``, ...; ``all`` for a flat gta5 folder).
        need_classes: False skips reading classes.json (unlabelled, images-only use).
        **options: layout options (``label_type``, ``condition``, ``reduce_zero_label``, ``classes``).

    Raises:
        DatasetError: unknown layout/option, wrong directory structure, missing split or classes.
    """
    lay = get_layout(layout)
    lay.check_options(options)
    return lay.list_split(Path(root), split, need_classes=need_classes, **options)


__all__ = [
    "ACDC_CONDITIONS",
    "LAYOUTS",
    "ClassInfo",
    "Layout",
    "LayoutOption",
    "Sample",
    "SplitListing",
    "check_structure",
    "class_info_from_dict",
    "detect_layout",
    "get_layout",
    "layout_catalogue",
    "list_layouts",
    "list_split",
    "list_splits",
    "read_classes_json",
    "register_layout",
]

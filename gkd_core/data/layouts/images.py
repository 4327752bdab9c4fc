"""A plain folder of images (optionally one subfolder per split), read recursively, without labels.

::

    root/**/*.{jpg,png,webp,...}            split "all": the whole tree
    root/{split}/**/*.{jpg,png,webp,...}    or one subfolder per split
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gkd_core.data.layouts._images import ImageSetLayout, image_samples, is_image, iter_images, visible_subdirs
from gkd_core.data.layouts._listing import Sample
from gkd_core.data.layouts._registry import register_layout
from gkd_core.errors import DatasetError

ALL = "all"


@register_layout
class Images(ImageSetLayout):
    name = "images"
    description = "images only: a folder of images, read recursively; {split}/ subfolders or split 'all'"

    def splits(self, root: Path, **options: Any) -> list[str]:
        """Subfolders holding images, plus "all" when images lie directly in ``root`` (``"all"`` is
        always accepted by ``list_split`` and reads the whole tree)."""
        names = [d for d in visible_subdirs(root) if next(iter_images(root / d), None) is not None]
        if ALL not in names and root.is_dir() and any(_loose_image(p) for p in root.iterdir()):
            names.append(ALL)
        return names

    def images(self, root: Path, split: str, **options: Any) -> list[Sample]:
        if (root / split).is_dir() and not split.startswith("."):
            return image_samples(root / split)
        if split == ALL:
            return image_samples(root)
        raise DatasetError(f"split {split!r} not found in images dataset {root}; splits: {self.splits(root)}")

    def detect(self, root: Path) -> float:
        # A catch-all: any tree with images fits, so every other layout outranks it.
        return 0.1 if next(iter_images(root), None) is not None else 0.0


def _loose_image(path: Path) -> bool:
    return is_image(path) and not path.name.startswith(".") and path.is_file()

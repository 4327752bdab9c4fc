"""ImageNet-style class-folder trees (ILSVRC-2012 and its kin), read as unlabelled images for stage 1.

::

    {split}/{wnid}/*.JPEG        (read recursively; .JPEG/.jpg/.png/.webp in any case)

The class folders are not segmentation labels, so the set is images-only. A flat ``val/`` folder
(the original ILSVRC validation release) reads the same, since every split is read recursively.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gkd_core.data.layouts._images import ImageSetLayout, image_samples, visible_subdirs
from gkd_core.data.layouts._listing import Sample
from gkd_core.data.layouts._registry import register_layout
from gkd_core.errors import DatasetError

_WNID = re.compile(r"n\d{8}")


@register_layout
class ImageNet(ImageSetLayout):
    name = "imagenet"
    description = "images only: ImageNet-style class folders {split}/{wnid}/*.JPEG, read recursively"

    def splits(self, root: Path, **options: Any) -> list[str]:
        return visible_subdirs(root)

    def images(self, root: Path, split: str, **options: Any) -> list[Sample]:
        if split not in self.splits(root):
            raise DatasetError(f"split {split!r} not found in imagenet dataset {root}; splits: {self.splits(root)}")
        return image_samples(root / split)

    def detect(self, root: Path) -> float:
        # WordNet-id class folders (n01440764) one level below a split folder are ImageNet's signature.
        for split in visible_subdirs(root):
            if any(_WNID.fullmatch(d) for d in visible_subdirs(root / split)):
                return 0.8
        return 0.0

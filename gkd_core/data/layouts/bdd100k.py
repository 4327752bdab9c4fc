"""BDD100K semantic segmentation (Yu et al., CVPR 2020): the 10k images with train-id masks.

::

    images/10k/{split}/*.jpg
    labels/sem_seg/masks/{split}/*.png      (Cityscapes train ids 0..18, 255 ignore)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gkd_core.data.layouts._base import Layout
from gkd_core.data.layouts._classes import CITYSCAPES_INFO
from gkd_core.data.layouts._files import PairSource, pair_samples, require_dirs, require_split, subdirs
from gkd_core.data.layouts._listing import SplitListing
from gkd_core.data.layouts._registry import register_layout


@register_layout
class BDD100K(Layout):
    name = "bdd100k"
    description = "BDD100K: images/10k/{split}/*.jpg, labels/sem_seg/masks/{split}/*.png (train ids)"
    required_dirs = ("images/10k", "labels/sem_seg/masks")

    def splits(self, root: Path, **options: Any) -> list[str]:
        return subdirs(root / "images" / "10k")

    def list_split(self, root: Path, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
        require_dirs(root, self.name, *self.required_dirs)
        require_split(root, self.name, split, root / "images" / "10k" / split, self.splits(root))
        source = PairSource(root / "images" / "10k" / split, root / "labels" / "sem_seg" / "masks" / split)
        return SplitListing(
            layout=self.name, root=root, split=split, samples=pair_samples([source]), classes=CITYSCAPES_INFO
        )

    def detect(self, root: Path) -> float:
        return 1.0 if (root / "images" / "10k").is_dir() else 0.0

"""Shared parts of the images-only layouts (imagenet, images, image_list): no masks, no classes.

Stage 1 distillation reads images only, so a proxy set or extra unlabelled images can come in any of
these layouts. Listing one for labels (stage 2, evaluation) raises a DatasetError that says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gkd_core.data._io import IMAGE_EXTENSIONS
from gkd_core.data.layouts._base import Layout
from gkd_core.data.layouts._files import require_root
from gkd_core.data.layouts._listing import ClassInfo, Sample, SplitListing, images_only_error
from gkd_core.errors import DatasetError

NO_CLASSES = ClassInfo(names=[])


def is_image(path: Path) -> bool:
    """True for a file name ending in an image extension (any case: .JPEG, .Png, .webp)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _visible(rel: Path) -> bool:
    # Hidden files and folders (.DS_Store, macOS "._x.jpg" resource forks, .cache/) are never images.
    return not any(part.startswith(".") for part in rel.parts)


def iter_images(base: Path) -> Iterator[Path]:
    """Image files under ``base``, recursively, skipping hidden files and folders (unsorted)."""
    if not base.is_dir():
        return
    for path in base.rglob("*"):
        if is_image(path) and _visible(path.relative_to(base)) and path.is_file():
            yield path


def image_samples(base: Path) -> list[Sample]:
    """Every image under ``base`` (recursive), named by its path relative to ``base`` minus the extension."""
    paths = sorted(iter_images(base))
    return [Sample(name=p.relative_to(base).with_suffix("").as_posix(), image=p, mask=None) for p in paths]


def visible_subdirs(path: Path) -> list[str]:
    """Sorted names of the non-hidden folders directly inside ``path``."""
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


class ImageSetLayout(Layout):
    """A layout without labels: subclasses implement ``splits``, ``images`` and ``detect``."""

    labels = False

    def check_structure(self, root: Path) -> None:
        require_root(root)
        if not self.splits(root):
            raise DatasetError(f"{root} holds no {self.name!r} splits: {self.description}")

    def images(self, root: Path, split: str, **options: Any) -> list[Sample]:
        """The samples (``mask`` always None) of one split.

        Raises:
            DatasetError: the split does not exist.
        """
        raise NotImplementedError

    def list_split(self, root: Path, split: str, *, need_classes: bool = True, **options: Any) -> SplitListing:
        if need_classes:
            raise images_only_error(self.name, root)
        require_root(root)
        samples = self.images(root, split, **options)
        return SplitListing(
            layout=self.name, root=root, split=split, samples=samples, classes=NO_CLASSES, labelled=False
        )

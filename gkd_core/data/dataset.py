"""The segmentation dataset every stage reads: one class for all layouts, decoded with PIL.

Items are ``{"image": float32 [0, 1] 3xHxW, "mask": int64 HxW (ignore = 255), "name": str}``;
``images_only=True`` drops the mask (stage 1 distillation needs no labels, and proxy sets have none).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from gkd_core.data._io import load_image, load_mask
from gkd_core.data.layouts import ClassInfo, Sample, SplitListing, list_split
from gkd_core.errors import DatasetError

_logger = logging.getLogger(__name__)

JointTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
ImageTransform = Callable[[torch.Tensor], torch.Tensor]


class SegmentationDataset(Dataset[dict[str, Any]]):
    """Image/mask pairs of one split of one layout.

    Args:
        listing: the resolved split (see ``layouts.list_split``).
        transform: joint ``(image, mask) -> (image, mask)``; or, with ``images_only``, ``image -> image``.
        images_only: skip masks; samples without a mask are then kept.
    """

    def __init__(
        self, listing: SplitListing, transform: Callable[..., Any] | None = None, images_only: bool = False
    ) -> None:
        self.listing = listing
        self.transform = transform
        self.images_only = images_only
        if images_only:
            self.samples: list[Sample] = [s for s in listing.samples if s.image is not None]
        else:
            listing.require_labels()
            self.samples = listing.complete
            dropped = len(listing.samples) - len(self.samples)
            if dropped:
                _logger.warning(
                    "%s/%s: %d sample(s) lack an image or a mask and are skipped (run validate_dataset for the list)",
                    listing.root,
                    listing.split,
                    dropped,
                )
        if not self.samples:
            raise DatasetError(
                f"split {listing.split!r} of {listing.layout} dataset {listing.root} has no "
                f"{'images' if images_only else 'image/mask pairs'}"
            )

    @property
    def class_info(self) -> ClassInfo:
        return self.listing.classes

    @property
    def classes(self) -> list[str]:
        return self.listing.classes.names

    @property
    def num_classes(self) -> int:
        return self.listing.classes.num_classes

    @property
    def ignore_index(self) -> int:
        return self.listing.classes.ignore_index

    @property
    def palette(self) -> list[tuple[int, int, int]] | None:
        return self.listing.classes.palette

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load_mask(self, index: int) -> torch.Tensor:
        """The converted mask of sample ``index`` (int64 HxW) without decoding the image."""
        sample = self.samples[index]
        if sample.mask is None:
            raise DatasetError(f"sample {sample.name!r} has no mask")
        return torch.from_numpy(self.listing.convert_mask(load_mask(sample.mask)))

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        assert sample.image is not None
        image = torch.from_numpy(load_image(sample.image)).permute(2, 0, 1).float().div_(255.0)
        if self.images_only:
            if self.transform is not None:
                image = self.transform(image)
            return {"image": image, "name": sample.name}
        mask = self.load_mask(index)
        if mask.shape != image.shape[1:]:
            raise DatasetError(
                f"{sample.name}: image is {tuple(image.shape[1:])} but mask is {tuple(mask.shape)} "
                f"({sample.image}, {sample.mask})"
            )
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return {"image": image, "mask": mask, "name": sample.name}


def open_dataset(
    root: str | Path,
    layout: str,
    split: str,
    *,
    transform: Callable[..., Any] | None = None,
    images_only: bool = False,
    **options: Any,
) -> SegmentationDataset:
    """Open one split of a local dataset directory.

    Args:
        root: dataset directory (a local path; the worker syncs remote datasets to a cache dir first).
        layout: one of ``LAYOUTS``.
        split: split name, e.g. ``"train"`` or ``"val"``.
        transform: optional joint transform (or image transform when ``images_only``).
        images_only: return images without masks (no classes.json needed); the only way to open an
            images-only layout (imagenet, images, image_list).
        **options: layout options: ``label_type`` (cityscapes/acdc: "auto"|"trainIds"|"labelIds"),
            ``condition`` (acdc: "fog"|"night"|"rain"|"snow"|"all"|list), ``reduce_zero_label`` and
            ``classes`` (mmseg).

    Raises:
        DatasetError: wrong layout, missing split or classes, labels asked of an images-only set, or an
            empty split.
    """
    listing = list_split(Path(root), layout, split, need_classes=not images_only, **options)
    return SegmentationDataset(listing, transform=transform, images_only=images_only)

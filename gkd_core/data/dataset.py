"""The segmentation dataset every stage reads: one class for all layouts, decoded with PIL.

Items are ``{"image": float32 [0, 1] 3xHxW, "mask": int64 HxW (ignore = 255), "name": str}``;
``images_only=True`` drops the mask (stage 1 distillation needs no labels, and proxy sets have none).

Real releases hold a few image/label pairs of different sizes (GTA5 does). Opening a labelled split
reads the image and mask headers of every pair (no pixel decoding: under 0.1 ms a file, about 0.3 s
for 2,000 pairs) and applies ``size_mismatch``: "skip" (default) leaves those pairs out and lists
them in ``dataset.skipped``, "resize" keeps them and resizes the mask to the image with
nearest-neighbour when the item is read (listed in ``dataset.resized``), "error" raises before any
training starts. Pairs whose headers cannot be read are skipped under "skip" and "resize" too.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from gkd_core.data._io import image_size, load_image, load_mask
from gkd_core.data.layouts import ClassInfo, Sample, SplitListing, list_split
from gkd_core.errors import DatasetError

_logger = logging.getLogger(__name__)

JointTransform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
ImageTransform = Callable[[torch.Tensor], torch.Tensor]
SIZE_MISMATCH_RULES: tuple[str, ...] = ("skip", "resize", "error")


@dataclass(frozen=True)
class PairIssue:
    """A pair found at open time whose sizes differ (``reason="size_mismatch"``) or whose header cannot
    be read (``"unreadable"``); ``detail`` says how, for an event or a log line."""

    name: str
    image: Path
    mask: Path
    reason: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "image": str(self.image),
            "mask": str(self.mask),
            "reason": self.reason,
            "detail": self.detail,
        }


def check_pair_sizes(samples: list[Sample]) -> dict[int, PairIssue]:
    """``{index: issue}`` for the pairs whose image and mask headers disagree in size or cannot be read.

    Only the file headers are read (PIL's lazy open), so this costs a few file opens, not decodes.
    """
    issues: dict[int, PairIssue] = {}
    for i, sample in enumerate(samples):
        assert sample.image is not None and sample.mask is not None
        try:
            img_hw, mask_hw = image_size(sample.image), image_size(sample.mask)
        except DatasetError as exc:
            issues[i] = PairIssue(sample.name, sample.image, sample.mask, "unreadable", str(exc))
            continue
        if img_hw != mask_hw:
            detail = f"image is {img_hw[0]}x{img_hw[1]} but mask is {mask_hw[0]}x{mask_hw[1]} (HxW)"
            issues[i] = PairIssue(sample.name, sample.image, sample.mask, "size_mismatch", detail)
    return issues


class SegmentationDataset(Dataset[dict[str, Any]]):
    """Image/mask pairs of one split of one layout.

    Args:
        listing: the resolved split (see ``layouts.list_split``).
        transform: joint ``(image, mask) -> (image, mask)``; or, with ``images_only``, ``image -> image``.
        images_only: skip masks; samples without a mask are then kept.
        size_mismatch: what to do with pairs whose image and mask sizes differ: "skip" (default; listed
            in ``skipped``), "resize" (mask resized with nearest-neighbour on read; listed in
            ``resized``) or "error" (raise here). Ignored with ``images_only``.

    Raises:
        DatasetError: labels asked of an images-only set, an empty split, an unknown ``size_mismatch``,
            or with "error", any mismatched or unreadable pair.
    """

    def __init__(
        self,
        listing: SplitListing,
        transform: Callable[..., Any] | None = None,
        images_only: bool = False,
        size_mismatch: str = "skip",
    ) -> None:
        if size_mismatch not in SIZE_MISMATCH_RULES:
            raise DatasetError(f"size_mismatch must be one of {', '.join(SIZE_MISMATCH_RULES)}, got {size_mismatch!r}")
        self.listing = listing
        self.transform = transform
        self.images_only = images_only
        self.size_mismatch = size_mismatch
        self.skipped: list[PairIssue] = []
        self.resized: list[PairIssue] = []
        if images_only:
            self.samples: list[Sample] = [s for s in listing.samples if s.image is not None]
        else:
            listing.require_labels()
            self.samples = self._check_pairs(listing.complete)
            dropped = len(listing.samples) - len(listing.complete)
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

    def _check_pairs(self, samples: list[Sample]) -> list[Sample]:
        issues = check_pair_sizes(samples)
        if not issues:
            return samples
        where = f"{self.listing.layout} dataset {self.listing.root} split {self.listing.split!r}"
        if self.size_mismatch == "error":
            first = "; ".join(f"{i.name}: {i.detail}" for i in list(issues.values())[:5])
            raise DatasetError(
                f"{where}: {len(issues)} pair(s) have mismatched sizes or unreadable headers ({first}); "
                "open with size_mismatch='skip' or 'resize', or fix the files"
            )
        keep_mismatched = self.size_mismatch == "resize"
        drop = {i for i, issue in issues.items() if issue.reason != "size_mismatch" or not keep_mismatched}
        self.skipped = [issues[i] for i in sorted(drop)]
        self.resized = [issue for i, issue in sorted(issues.items()) if i not in drop]
        if self.skipped:
            _logger.warning(
                "%s: %d pair(s) skipped (%s), e.g. %s: %s",
                where,
                len(self.skipped),
                ", ".join(sorted({s.reason for s in self.skipped})),
                self.skipped[0].name,
                self.skipped[0].detail,
            )
        if self.resized:
            _logger.info("%s: %d mask(s) will be resized to their image (nearest)", where, len(self.resized))
        return [s for i, s in enumerate(samples) if i not in drop]

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

    def decoded(self, index: int) -> tuple[np.ndarray, torch.Tensor | None]:
        """Sample ``index`` before the transform: the uint8 HxWx3 image and (labelled sets) its int64 mask.

        A prepared dataset (``gkd_core.data.prepared``) overrides this to read stored pixels instead.
        """
        sample = self.samples[index]
        assert sample.image is not None
        image = load_image(sample.image)
        if self.images_only:
            return image, None
        mask = self.load_mask(index)
        if mask.shape != image.shape[:2]:
            if self.size_mismatch != "resize":
                # Headers agreed at open time, so a file changed since (or lies in its header).
                raise DatasetError(
                    f"{sample.name}: image is {tuple(image.shape[:2])} but mask is {tuple(mask.shape)} "
                    f"({sample.image}, {sample.mask})"
                )
            mask = _resize_nearest(mask, (image.shape[0], image.shape[1]))
        return image, mask

    def __getitem__(self, index: int) -> dict[str, Any]:
        pixels, mask = self.decoded(index)
        image = torch.from_numpy(pixels).permute(2, 0, 1)
        if not getattr(self.transform, "takes_uint8", False):
            image = image.float().div_(255.0)
        # else: a random-crop transform converts only the window it keeps (most of a large frame is cut away).
        name = self.samples[index].name
        if mask is None:
            if self.transform is not None:
                image = self.transform(image)
            return {"image": image, "name": name}
        if self.transform is not None:
            image, mask = self.transform(image, mask)
        return {"image": image, "mask": mask, "name": name}


def open_dataset(
    root: str | Path,
    layout: str,
    split: str,
    *,
    transform: Callable[..., Any] | None = None,
    images_only: bool = False,
    size_mismatch: str = "skip",
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
        size_mismatch: "skip" | "resize" | "error" for image/mask pairs of different sizes (see
            ``SegmentationDataset``); the skipped pairs are in ``dataset.skipped``.
        **options: layout options (``layout_catalogue()`` lists them): ``label_type``
            (cityscapes/acdc: "auto"|"trainIds"|"labelIds"; mapillary: "trainIds"|"vistas"),
            ``condition`` (acdc: "fog"|"night"|"rain"|"snow"|"all"|list), ``reduce_zero_label`` and
            ``classes`` (mmseg).

    Raises:
        DatasetError: wrong layout, missing split or classes, labels asked of an images-only set, an
            empty split, or (with ``size_mismatch="error"``) mismatched pairs.
    """
    listing = list_split(Path(root), layout, split, need_classes=not images_only, **options)
    return SegmentationDataset(listing, transform=transform, images_only=images_only, size_mismatch=size_mismatch)


def _resize_nearest(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    # nearest-exact (pixel centres aligned) as in the transforms; float32 holds label ids exactly.
    resized = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")
    return resized[0, 0].to(torch.int64)

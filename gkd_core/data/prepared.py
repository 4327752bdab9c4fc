"""A registered split decoded once into raw uint8 pixels, so training reads without decoding (issue 15).

Decoding dominates the input pipeline: a 1914x1052 PNG takes tens of milliseconds to decode, an
ImageNet JPEG a few, while copying the same pixels out of a memory-mapped file takes well under one.
``prepare`` decodes every image (and converted mask) of a split once, resizes it so its short side is
at most ``short_side`` (never enlarging), and stores it in a cache folder:

    <cache>/<key>/images.u8    every image, uint8 HxWx3, back to back
    <cache>/<key>/masks.u8     every converted mask (uint8, or int32 as masks.i32 for ids above 255)
    <cache>/<key>/index.npy    int64 [N, 6]: image offset, height, width, mask offset, height, width
    <cache>/<key>/meta.json    format version, names, sizes and the source identity

No pickle anywhere: ``np.load(allow_pickle=False)`` and JSON. ``key`` hashes the source files'
identity (relative path, size, mtime), the label conversion, the layout/split and ``short_side``, so a
changed dataset or another size gets a new entry; a lock file makes concurrent ranks or jobs build it
once, and the entry appears (atomic rename) only when complete.

A ``PreparedDataset`` returns exactly what ``SegmentationDataset`` returns for the stored pixels: at
native size (the image's short side is at most ``short_side``) items are bit-identical; after a
resize they equal the unprepared path applied to the image resized with ``transforms.resize_image``
(antialiased bilinear), up to the uint8 rounding of that resize.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from gkd_core.data._io import image_size
from gkd_core.data.dataset import SegmentationDataset
from gkd_core.data.loader import default_num_workers
from gkd_core.data.transforms import resize_image, resize_mask
from gkd_core.errors import DatasetError

_logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
# A prepared store is only written when the disk keeps this share free afterwards.
DISK_MARGIN = 0.10


def prepared_size(h: int, w: int, short_side: int | None) -> tuple[int, int]:
    """(h, w) an image is stored at: short side ``short_side`` when that shrinks it, else unchanged."""
    if short_side is None or min(h, w) <= short_side:
        return h, w
    f = short_side / min(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def source_key(dataset: SegmentationDataset, short_side: int | None) -> str:
    """Hash of everything the stored pixels depend on: files (path, size, mtime), labels, layout, size."""
    listing = dataset.listing
    digest = hashlib.sha256()
    head = {
        "version": FORMAT_VERSION,
        "layout": listing.layout,
        "root": str(Path(listing.root).resolve()),
        "split": listing.split,
        "images_only": dataset.images_only,
        "size_mismatch": dataset.size_mismatch,
        "short_side": short_side,
        "classes": [listing.classes.names, listing.classes.ignore_index] if not dataset.images_only else None,
        "reduce_zero_label": listing.reduce_zero_label,
        "lut": hashlib.sha256(listing.label_lut.tobytes()).hexdigest() if listing.label_lut is not None else None,
    }
    digest.update(json.dumps(head, sort_keys=True).encode())
    for sample in dataset.samples:
        paths = [sample.image] if dataset.images_only else [sample.image, sample.mask]
        for path in paths:
            assert path is not None
            st = path.stat()
            digest.update(f"\0{sample.name}\0{path}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class PrepareDecision:
    """Whether to prepare a split for one training stage, and why (for an event line)."""

    prepare: bool
    reason: str
    bytes_needed: int


def decide(dataset: SegmentationDataset, cache_dir: Path, short_side: int | None, reads: int) -> PrepareDecision:
    """Prepare when the stage reads the split more than once over and the store fits on the cache's disk.

    Preparing decodes every image once; it pays off when training reads more images than the split
    holds (every read after the first pass skips a decode). ``reads`` is the stage's steps x batch.
    """
    needed = estimated_bytes(dataset, short_side)
    size = len(dataset)
    if reads <= size:
        return PrepareDecision(False, f"the stage reads {reads:,} images, not more than the split's {size:,}", needed)
    cache_dir.mkdir(parents=True, exist_ok=True)
    usage = shutil.disk_usage(cache_dir)
    if needed > usage.free - DISK_MARGIN * usage.total:
        return PrepareDecision(
            False,
            f"the store needs {needed / 2**30:.1f} GiB and {cache_dir} has {usage.free / 2**30:.1f} GiB free",
            needed,
        )
    return PrepareDecision(True, f"{reads / size:.1f} passes over {size:,} images", needed)


def estimated_bytes(dataset: SegmentationDataset, short_side: int | None) -> int:
    """Bytes of the prepared store, from the image headers (no decoding)."""
    total = 0
    for h, w in _stored_sizes(dataset, short_side):
        total += h * w * (3 if dataset.images_only else 4)
    return total


def _stored_sizes(dataset: SegmentationDataset, short_side: int | None) -> list[tuple[int, int]]:
    out = []
    for sample in dataset.samples:
        assert sample.image is not None
        out.append(prepared_size(*image_size(sample.image), short_side))
    return out


class _Decode(Dataset[tuple[int, np.ndarray, np.ndarray | None]]):
    """One sample decoded and resized for the store, in a loader worker."""

    def __init__(self, dataset: SegmentationDataset, sizes: list[tuple[int, int]]) -> None:
        self.dataset = dataset
        self.sizes = sizes

    def __len__(self) -> int:
        return len(self.sizes)

    def __getitem__(self, index: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        pixels, mask = SegmentationDataset.decoded(self.dataset, index)
        target = self.sizes[index]
        if pixels.shape[:2] != target:
            image = torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255.0)
            resized = resize_image(image, target).mul_(255.0).round_().clamp_(0, 255).to(torch.uint8)
            pixels = resized.permute(1, 2, 0).contiguous().numpy()
            if mask is not None:
                mask = resize_mask(mask, target)
        return index, pixels, None if mask is None else mask.numpy()


def _mask_dtype(dataset: SegmentationDataset) -> np.dtype[Any]:
    classes = dataset.class_info
    small = classes.num_classes <= 255 and 0 <= classes.ignore_index <= 255
    return np.dtype(np.uint8) if small else np.dtype(np.int32)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(
    dataset: SegmentationDataset,
    cache_dir: str | Path,
    short_side: int | None,
    *,
    num_workers: int | None = None,
) -> PreparedDataset:
    """The split of ``dataset`` read from its prepared store under ``cache_dir`` (built on first use).

    Args:
        dataset: an opened split (its transform is kept and applied to the stored pixels).
        cache_dir: folder of prepared stores (beside the dataset cache).
        short_side: images with a longer short side are shrunk to it; None stores native sizes.
        num_workers: decoding processes while building (None: one per available core).

    Raises:
        DatasetError: a file changed while the store was built, or a mask id does not fit its dtype.
    """
    cache = Path(cache_dir)
    key = source_key(dataset, short_side)
    entry = cache / key
    with _locked(cache / f"{key}.lock"):
        if not (entry / "meta.json").is_file():
            _build(dataset, entry, short_side, default_num_workers() if num_workers is None else num_workers)
    return PreparedDataset(dataset, entry)


def _build(dataset: SegmentationDataset, entry: Path, short_side: int | None, num_workers: int) -> None:
    sizes = _stored_sizes(dataset, short_side)
    areas = np.array([h * w for h, w in sizes], dtype=np.int64)
    image_offsets = np.concatenate([[0], np.cumsum(areas * 3)[:-1]])
    mask_offsets = np.concatenate([[0], np.cumsum(areas)[:-1]])
    index = np.zeros((len(sizes), 6), dtype=np.int64)
    index[:, 0] = image_offsets
    index[:, 1:3] = sizes
    tmp = entry.with_name(f"{entry.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    mask_dtype = None if dataset.images_only else _mask_dtype(dataset)
    images = np.memmap(tmp / "images.u8", dtype=np.uint8, mode="w+", shape=(max(1, int(areas.sum()) * 3),))
    masks = None
    if mask_dtype is not None:
        index[:, 3] = mask_offsets
        index[:, 4:6] = sizes
        name = "masks.u8" if mask_dtype == np.uint8 else "masks.i32"
        masks = np.memmap(tmp / name, dtype=mask_dtype, mode="w+", shape=(max(1, int(areas.sum())),))
    limit = np.iinfo(mask_dtype).max if mask_dtype is not None else 0
    loader = DataLoader(_Decode(dataset, sizes), batch_size=None, num_workers=num_workers)
    try:
        for i, pixels, mask in loader:
            name = dataset.samples[i].name
            h, w = sizes[i]
            if pixels.shape != (h, w, 3):
                raise DatasetError(f"{name}: decoded as {pixels.shape[:2]}, its header said {(h, w)} (file changed?)")
            off = int(index[i, 0])
            images[off : off + h * w * 3] = pixels.reshape(-1)
            if masks is not None and mask is not None:
                if mask.min() < 0 or mask.max() > limit:
                    raise DatasetError(f"{name}: mask ids {int(mask.min())}..{int(mask.max())} do not fit {mask_dtype}")
                moff = int(index[i, 3])
                masks[moff : moff + h * w] = mask.reshape(-1)
        images.flush()
        if masks is not None:
            masks.flush()
        del images, masks
        np.save(tmp / "index.npy", index, allow_pickle=False)
        meta = {
            "version": FORMAT_VERSION,
            "names": dataset.names,
            "short_side": short_side,
            "images_only": dataset.images_only,
            "mask_dtype": None if mask_dtype is None else str(mask_dtype),
            "source": [dataset.listing.layout, str(dataset.listing.root), dataset.listing.split],
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _logger.info("prepared %d images of %s/%s into %s", len(sizes), dataset.listing.root, dataset.listing.split, entry)


class PreparedDataset(SegmentationDataset):
    """A ``SegmentationDataset`` whose pixels come from a prepared store (same items, same transform).

    The memory maps open lazily in each process (loader workers included) and are not pickled.
    """

    def __init__(self, base: SegmentationDataset, entry: Path) -> None:
        self.__dict__.update(base.__dict__)
        self.entry = Path(entry)
        meta = json.loads((self.entry / "meta.json").read_text())
        if meta.get("version") != FORMAT_VERSION or meta["names"] != base.names:
            raise DatasetError(f"prepared store {self.entry} does not match {base.listing.root} (delete it to rebuild)")
        self.index = np.load(self.entry / "index.npy", allow_pickle=False)
        self.mask_dtype = meta["mask_dtype"]
        self._maps: tuple[np.ndarray, np.ndarray | None] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_maps"] = None
        return state

    def _open(self) -> tuple[np.ndarray, np.ndarray | None]:
        # Copy-on-write maps: items are views of the page cache (no copy of a frame the crop mostly
        # discards), writable as torch wants, and a write could never reach the store.
        if self._maps is None:
            images = np.memmap(self.entry / "images.u8", dtype=np.uint8, mode="c")
            masks = None
            if self.mask_dtype is not None:
                name = "masks.u8" if self.mask_dtype == "uint8" else "masks.i32"
                masks = np.memmap(self.entry / name, dtype=np.dtype(self.mask_dtype), mode="c")
            self._maps = (images, masks)
        return self._maps

    def load_mask(self, index: int) -> torch.Tensor:
        _, masks = self._open()
        if masks is None:
            return super().load_mask(index)
        off, h, w = (int(v) for v in self.index[index, 3:6])
        return torch.from_numpy(np.asarray(masks[off : off + h * w]).reshape(h, w).astype(np.int64))

    def decoded(self, index: int) -> tuple[np.ndarray, torch.Tensor | None]:
        images, masks = self._open()
        off, h, w = (int(v) for v in self.index[index, 0:3])
        pixels = images[off : off + h * w * 3].reshape(h, w, 3)
        if self.images_only or masks is None:
            return pixels, None
        if not getattr(self.transform, "takes_uint8", False):
            return pixels, self.load_mask(index)
        # The transform crops first and returns int64 ids itself: skip widening the whole mask.
        moff, mh, mw = (int(v) for v in self.index[index, 3:6])
        return pixels, torch.from_numpy(masks[moff : moff + mh * mw].reshape(mh, mw))


def stage_short_side(kind: str, *, image_size: int, base_size: int | None = None, max_scale: float = 1.0) -> int | None:
    """The short side a training stage's prepared images are stored at.

    - ``"stage1"``: twice the training size. RandomResizedCrop then upsamples a crop from the stored
      image no more than from the original whenever it covers a quarter of the image or more (about
      80 % of DeiT's 0.08-1 scale draws); ImageNet's typical images (short side ~375) stay native at 224.
    - ``"stage2"``: ``base_size x`` the largest random scale (GTAV: 512 x 2 = 1024), so no scale ever
      enlarges the stored image where it would have shrunk the original; None (scales relative to each
      image's own size) stores native sizes.
    """
    if kind == "stage1":
        return 2 * image_size
    if kind == "stage2":
        return None if base_size is None else math.ceil(base_size * max_scale)
    raise ValueError(f"kind must be 'stage1' or 'stage2', got {kind!r}")

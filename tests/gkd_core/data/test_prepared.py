"""Prepared stores: items equal the decoding path, the key follows the files, the rule says when."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from gkd_core.data import SegTrainTransform, Stage1Transform, open_dataset
from gkd_core.data import prepared as prep
from gkd_core.data.transforms import resize_image, resize_mask
from gkd_core.engine.seeding import isolated_rng
from tests.gkd_core.data import fixtures as fx

H, W = 40, 60


def _folder(root: Path, n: int = 4) -> Path:
    for i in range(n):
        fx.save(root / "images" / "train" / f"f{i}.png", fx.image(i, H + 2 * i, W))
        fx.save(root / "masks" / "train" / f"f{i}.png", fx.mask([0, 1, 2, 255], H + 2 * i, W))
    (root / "classes.json").write_text(json.dumps({"names": ["a", "b", "c"], "ignore_index": 255}))
    return root


def _items(ds, seed: int = 0) -> list[dict]:
    out = []
    for i in range(len(ds)):
        with isolated_rng(seed + i):  # torch, numpy and random: timm's RandAugment draws from all of them
            out.append(ds[i])
    return out


def test_native_store_gives_bit_identical_items(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    ds = open_dataset(root, "folder", "train", transform=SegTrainTransform(crop=32, base_size=36))
    ready = prep.prepare(ds, tmp_path / "prepared", short_side=None, num_workers=0)
    assert isinstance(ready, prep.PreparedDataset) and ready.names == ds.names
    for a, b in zip(_items(ds), _items(ready), strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"]) and a["name"] == b["name"]
    images = open_dataset(root, "folder", "train", images_only=True, transform=Stage1Transform(24))
    ready_images = prep.prepare(images, tmp_path / "prepared", short_side=10_000, num_workers=0)
    for a, b in zip(_items(images, 5), _items(ready_images, 5), strict=True):
        assert torch.equal(a["image"], b["image"]) and "mask" not in b


def test_resized_store_equals_the_resized_source_within_rounding(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    plain = open_dataset(root, "folder", "train")
    ready = prep.prepare(plain, tmp_path / "prepared", short_side=20, num_workers=2)
    crop = SegTrainTransform(crop=16, base_size=20, photometric=False)
    ready_aug = prep.PreparedDataset(open_dataset(root, "folder", "train", transform=crop), ready.entry)
    for i in range(len(plain)):
        item, stored = plain[i], ready[i]
        height, width = item["image"].shape[-2:]
        size = prep.prepared_size(int(height), int(width), 20)
        assert min(size) == 20 and tuple(stored["image"].shape[-2:]) == size
        reference = resize_image(item["image"], size)
        assert (stored["image"] - reference).abs().max() <= 0.5 / 255 + 1e-6  # the uint8 rounding only
        assert torch.equal(stored["mask"], resize_mask(item["mask"], size))
        # Through the training transform: same crop geometry, still within the rounding.
        torch.manual_seed(i)
        expected = crop(reference, resize_mask(item["mask"], size))
        torch.manual_seed(i)
        got = ready_aug[i]
        assert (got["image"] - expected[0]).abs().max() <= 0.5 / 255 + 1e-6
        assert torch.equal(got["mask"], expected[1])


def test_store_is_reused_and_rebuilt_when_files_or_size_change(tmp_path: Path, monkeypatch) -> None:
    root = _folder(tmp_path / "data")
    ds = open_dataset(root, "folder", "train")
    builds: list[Path] = []
    real_build = prep._build

    def counting_build(d: Any, entry: Path, s: Any, w: Any) -> Any:
        builds.append(entry)
        return real_build(d, entry, s, w)

    monkeypatch.setattr(prep, "_build", counting_build)
    first = prep.prepare(ds, tmp_path / "p", short_side=20, num_workers=0)
    again = prep.prepare(open_dataset(root, "folder", "train"), tmp_path / "p", short_side=20, num_workers=0)
    assert len(builds) == 1 and again.entry == first.entry
    assert prep.prepare(ds, tmp_path / "p", short_side=30, num_workers=0).entry != first.entry
    changed = root / "images" / "train" / "f1.png"
    fx.save(changed, fx.image(77, H + 2, W))
    os.utime(changed, ns=(1, 1))  # a new mtime even on coarse clocks
    rebuilt = prep.prepare(open_dataset(root, "folder", "train"), tmp_path / "p", short_side=20, num_workers=0)
    assert len(builds) == 3 and rebuilt.entry != first.entry
    assert not torch.equal(rebuilt[1]["image"], first[1]["image"])
    # Raw arrays and JSON only: the index loads without pickle; nothing half-built is left behind.
    np.load(rebuilt.entry / "index.npy", allow_pickle=False)
    assert not list((tmp_path / "p").glob("*.tmp-*"))


def test_prepared_dataset_in_loader_workers(tmp_path: Path) -> None:
    root = _folder(tmp_path / "data")
    ready = prep.prepare(open_dataset(root, "folder", "train"), tmp_path / "p", short_side=20, num_workers=0)
    ready[0]  # opens the memory maps here; they must not travel to the workers
    assert pickle.loads(pickle.dumps(ready))._maps is None
    inline = [ready[i]["image"] for i in range(len(ready))]
    loaded = [b["image"][0] for b in DataLoader(ready, batch_size=1, num_workers=2)]
    assert all(torch.equal(a, b) for a, b in zip(inline, loaded, strict=True))


def test_decide_prepares_only_what_is_read_more_than_once(tmp_path: Path) -> None:
    ds = open_dataset(_folder(tmp_path / "data"), "folder", "train")
    once = prep.decide(ds, tmp_path / "p", short_side=20, reads=len(ds))
    assert not once.prepare and "not more than" in once.reason
    many = prep.decide(ds, tmp_path / "p", short_side=20, reads=10 * len(ds))
    assert many.prepare and many.bytes_needed == sum(h * w * 4 for h, w in prep._stored_sizes(ds, 20))
    assert prep.stage_short_side("stage2", image_size=512, base_size=512, max_scale=2.0) == 1024
    assert prep.stage_short_side("stage2", image_size=512) is None
    assert prep.stage_short_side("stage1", image_size=224) == 448
    with pytest.raises(ValueError, match="stage1"):
        prep.stage_short_side("stage3", image_size=1)

"""Image/label pairs of different sizes (a few GTA5 pairs): skipped with a record by default, or resized."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gkd_core.data import open_dataset, validate_dataset
from gkd_core.errors import DatasetError
from tests.gkd_core.data import fixtures as fx


def _gta5_with_a_short_label(root: Path) -> Path:
    fx.gta5(root)
    fx.save(root / "labels" / "00001.png", fx.mask(fx.LABEL_IDS, h=4, w=8), mode="P")
    return root


def test_mismatched_pairs_are_skipped_and_recorded(tmp_path: Path) -> None:
    ds = open_dataset(_gta5_with_a_short_label(tmp_path), "gta5", "all")
    assert ds.names == ["00000", "00002"] and ds.resized == []
    [skipped] = ds.skipped
    assert skipped.name == "00001" and skipped.reason == "size_mismatch"
    assert skipped.detail == "image is 6x8 but mask is 4x8 (HxW)"
    assert json.loads(json.dumps(skipped.to_dict()))["mask"].endswith("00001.png")
    assert [ds[i]["mask"].shape for i in range(len(ds))] == [(fx.H, fx.W)] * 2


def test_validation_reports_the_same_pairs(tmp_path: Path) -> None:
    report = validate_dataset(_gta5_with_a_short_label(tmp_path), "gta5")
    assert dict(report.problem_counts) == {"size_mismatch": 1} and report.problems[0].name == "00001"


def test_resize_keeps_the_pair_and_resizes_the_mask_nearest(tmp_path: Path) -> None:
    ds = open_dataset(_gta5_with_a_short_label(tmp_path), "gta5", "all", size_mismatch="resize")
    assert len(ds) == 3 and ds.skipped == [] and [r.name for r in ds.resized] == ["00001"]
    mask = ds[1]["mask"]
    assert mask.shape == (fx.H, fx.W)
    # Nearest-neighbour: only values of the mapped label set appear, no blends.
    assert set(mask.unique().tolist()) <= set(fx.LABEL_IDS_AS_TRAIN.values())


def test_error_rule_fails_at_open_time(tmp_path: Path) -> None:
    _gta5_with_a_short_label(tmp_path)
    with pytest.raises(DatasetError, match=r"1 pair\(s\) have mismatched sizes.*00001: image is 6x8 but mask is 4x8"):
        open_dataset(tmp_path, "gta5", "all", size_mismatch="error")
    with pytest.raises(DatasetError, match="size_mismatch must be one of skip, resize, error"):
        open_dataset(tmp_path, "gta5", "all", size_mismatch="crop")


def test_unreadable_mask_headers_are_skipped_too(tmp_path: Path) -> None:
    fx.folder(tmp_path)
    (tmp_path / "masks" / "train" / "f0.png").write_bytes(b"not a png")
    for rule in ("skip", "resize"):
        ds = open_dataset(tmp_path, "folder", "train", size_mismatch=rule)
        assert ds.names == ["f1"] and [(s.name, s.reason) for s in ds.skipped] == [("f0", "unreadable")]


def test_images_only_reads_ignore_masks_and_their_sizes(tmp_path: Path) -> None:
    ds = open_dataset(_gta5_with_a_short_label(tmp_path), "gta5", "all", images_only=True, size_mismatch="error")
    assert len(ds) == 3 and ds.skipped == []


def test_every_pair_mismatched_leaves_an_empty_split(tmp_path: Path) -> None:
    fx.folder(tmp_path, splits=("train",), n=1)
    fx.save(tmp_path / "masks" / "train" / "f0.png", np.zeros((2, 2), np.uint8))
    with pytest.raises(DatasetError, match="has no image/mask pairs"):
        open_dataset(tmp_path, "folder", "train")

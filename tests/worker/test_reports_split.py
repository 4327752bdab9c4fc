"""A target's test-time scale and benchmark group survive the launch file that carries splits to the ranks."""

from __future__ import annotations

from pathlib import Path

from gkd_core.experiment import DatasetSplit
from worker.reports import decode_split, encode_split


def test_split_round_trip_keeps_resize_and_group(tmp_path: Path) -> None:
    split = DatasetSplit(
        tmp_path, "cityscapes", "val", "cityscapes/val", {"label_type": "trainIds"}, resize=(1024, 512), group="GTAV"
    )
    assert decode_split(encode_split(split)) == split
    plain = DatasetSplit(tmp_path, "folder", "train", "src/train")
    assert decode_split(encode_split(plain)) == plain

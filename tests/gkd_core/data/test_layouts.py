"""Readers for every layout: pairing, label mapping, item types, options and wrong-layout errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from gkd_core.data import CITYSCAPES_CLASSES, LAYOUTS, detect_layout, label_ids_to_train_ids, list_splits, open_dataset
from gkd_core.data.cityscapes_labels import LABEL_ID_TO_TRAIN_ID
from gkd_core.errors import DatasetError
from tests.gkd_core.data import fixtures as fx


def _check_item(item: dict, h: int = fx.H, w: int = fx.W) -> None:
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, h, w)
    assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (h, w)
    assert isinstance(item["name"], str)


def test_cityscapes_label_table_matches_public_definition() -> None:
    kept = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
    assert {label_id: i for i, label_id in enumerate(kept)} == LABEL_ID_TO_TRAIN_ID
    assert len(CITYSCAPES_CLASSES) == 19 and CITYSCAPES_CLASSES[13] == "car"
    out = label_ids_to_train_ids(np.arange(-1, 40))
    expected = [255] + [LABEL_ID_TO_TRAIN_ID.get(i, 255) for i in range(40)]
    assert out.tolist() == expected


def test_cityscapes_train_ids(tmp_path: Path) -> None:
    ds = open_dataset(fx.cityscapes(tmp_path), "cityscapes", "val")
    assert len(ds) == 2 and ds.names == ["aachen/aachen_000000_000011", "bonn/bonn_000001_000011"]
    assert ds.classes == CITYSCAPES_CLASSES and ds.ignore_index == 255 and ds.palette is not None
    item = ds[0]
    _check_item(item)
    assert set(item["mask"].unique().tolist()) == {0, 1, 18, 255}


def test_cityscapes_label_ids_are_mapped(tmp_path: Path) -> None:
    ds = open_dataset(fx.cityscapes(tmp_path, label_type="labelIds"), "cityscapes", "train")
    m = ds[0]["mask"]
    raw = fx.mask(fx.LABEL_IDS)
    expected = np.vectorize(fx.LABEL_IDS_AS_TRAIN.get)(raw)
    assert m.numpy().tolist() == expected.tolist()


def test_cityscapes_label_type_option_is_checked(tmp_path: Path) -> None:
    fx.cityscapes(tmp_path)
    with pytest.raises(DatasetError, match="label_type"):
        open_dataset(tmp_path, "cityscapes", "train", label_type="colour")


def test_gta5_palette_labels_are_ids_not_colours(tmp_path: Path) -> None:
    ds = open_dataset(fx.gta5(tmp_path), "gta5", "all")
    assert len(ds) == 3 and list_splits(tmp_path, "gta5") == ["all"]
    expected = np.vectorize(fx.LABEL_IDS_AS_TRAIN.get)(fx.mask(fx.LABEL_IDS))
    assert ds[1]["mask"].numpy().tolist() == expected.tolist()


def test_gta5_with_split_folders(tmp_path: Path) -> None:
    ds = open_dataset(fx.gta5(tmp_path, flat=False), "gta5", "train")
    assert len(ds) == 3
    with pytest.raises(DatasetError, match="split 'val' not found"):
        open_dataset(tmp_path, "gta5", "val")


def test_acdc_per_condition_and_all(tmp_path: Path) -> None:
    fx.acdc(tmp_path)
    night = open_dataset(tmp_path, "acdc", "val", condition="night")
    assert night.names == ["night/GOPR0175/GOPR0175_frame_000001"]
    both = open_dataset(tmp_path, "acdc", "val")
    assert len(both) == 2 and {n.split("/")[0] for n in both.names} == {"fog", "night"}
    _check_item(both[0])
    assert set(both[0]["mask"].unique().tolist()) == {2, 8, 255}
    with pytest.raises(DatasetError, match="snow"):
        open_dataset(tmp_path, "acdc", "val", condition="snow")


def test_bdd100k_jpeg_images(tmp_path: Path) -> None:
    ds = open_dataset(fx.bdd100k(tmp_path), "bdd100k", "val")
    assert ds.names == ["b0", "b1"]
    _check_item(ds[1])


def test_mapillary_split_aliases(tmp_path: Path) -> None:
    fx.mapillary(tmp_path)
    assert list_splits(tmp_path, "mapillary") == ["training", "validation"]
    ds = open_dataset(tmp_path, "mapillary", "val")
    assert len(ds) == 2 and set(ds[0]["mask"].unique().tolist()) == {0, 18, 255}


def test_mmseg_reduce_zero_label(tmp_path: Path) -> None:
    fx.mmseg(tmp_path)
    plain = open_dataset(tmp_path, "mmseg", "train")
    reduced = open_dataset(tmp_path, "mmseg", "train", reduce_zero_label=True)
    assert plain.num_classes == 6
    assert set(plain[0]["mask"].unique().tolist()) == {0, 1, 6, 255}
    assert set(reduced[0]["mask"].unique().tolist()) == {0, 5, 255}  # 0 -> ignore, 1 -> 0, 6 -> 5, 255 stays


def test_mmseg_needs_classes(tmp_path: Path) -> None:
    fx.mmseg(tmp_path, with_classes=False)
    with pytest.raises(DatasetError, match=r"classes.json"):
        open_dataset(tmp_path, "mmseg", "train")
    ds = open_dataset(tmp_path, "mmseg", "train", classes=["a", "b", "c", "d", "e", "f", "g"])
    assert ds.num_classes == 7


def test_folder_layout_and_classes_json(tmp_path: Path) -> None:
    ds = open_dataset(fx.folder(tmp_path), "folder", "train")
    assert ds.classes == ["sky", "road", "car"] and ds.palette == [(0, 0, 0), (40, 0, 0), (80, 0, 0)]
    _check_item(ds[0])


def test_folder_bad_classes_json(tmp_path: Path) -> None:
    fx.folder(tmp_path)
    (tmp_path / "classes.json").write_text('{"names": ["a"], "ignore_index": 0}')
    with pytest.raises(DatasetError, match="collides"):
        open_dataset(tmp_path, "folder", "train")
    (tmp_path / "classes.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        open_dataset(tmp_path, "folder", "train")


def test_images_only_needs_no_masks_or_classes(tmp_path: Path) -> None:
    fx.folder(tmp_path)
    (tmp_path / "classes.json").unlink()
    (tmp_path / "masks" / "train" / "f0.png").unlink()
    ds = open_dataset(tmp_path, "folder", "train", images_only=True)
    assert len(ds) == 2 and set(ds[0]) == {"image", "name"}


def test_wrong_layout_names_missing_folders_and_guess(tmp_path: Path) -> None:
    fx.folder(tmp_path)
    with pytest.raises(DatasetError, match=r"not a 'cityscapes' dataset.*looks like the 'folder' layout"):
        open_dataset(tmp_path, "cityscapes", "train")
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        open_dataset(tmp_path, "voc", "train")
    with pytest.raises(DatasetError, match="takes no option"):
        open_dataset(tmp_path, "folder", "train", condition="night")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_detect_layout(tmp_path: Path, layout: str) -> None:
    builders: dict[str, Callable[[Path], Path]] = {
        "cityscapes": fx.cityscapes, "gta5": fx.gta5, "acdc": fx.acdc, "bdd100k": fx.bdd100k,
        "mapillary": fx.mapillary, "mmseg": fx.mmseg, "folder": fx.folder,
        "imagenet": fx.imagenet, "images": fx.images, "image_list": fx.image_list,
    }
    build = builders[layout]
    assert detect_layout(build(tmp_path)) == layout


def test_missing_pairs_are_skipped_by_the_reader(tmp_path: Path) -> None:
    fx.folder(tmp_path, n=3)
    (tmp_path / "masks" / "train" / "f1.png").unlink()
    ds = open_dataset(tmp_path, "folder", "train")
    assert ds.names == ["f0", "f2"]


def test_transform_is_applied(tmp_path: Path) -> None:
    fx.folder(tmp_path)

    def flip(img: torch.Tensor, m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return img.flip(-1), m.flip(-1)

    plain, flipped = open_dataset(tmp_path, "folder", "val"), open_dataset(tmp_path, "folder", "val", transform=flip)
    assert torch.equal(flipped[0]["mask"], plain[0]["mask"].flip(-1))

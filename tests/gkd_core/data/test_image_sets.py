"""Images-only layouts (imagenet, images, image_list): listing, opening for stage 1, refusing labels, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gkd_core.data import Stage1Transform, list_layouts, list_splits, open_dataset, validate_dataset
from gkd_core.data.layouts import list_split
from gkd_core.errors import DatasetError
from tests.gkd_core.data import fixtures as fx

IMAGE_SETS = ("imagenet", "images", "image_list")


def test_images_only_layouts_are_registered_without_labels() -> None:
    assert list_layouts(labels=False) == list(IMAGE_SETS)
    assert not set(IMAGE_SETS) & set(list_layouts(labels=True))


def test_imagenet_reads_class_folders_recursively_in_any_extension_case(tmp_path: Path) -> None:
    fx.imagenet(tmp_path)
    assert list_splits(tmp_path, "imagenet") == ["train", "val"]
    ds = open_dataset(tmp_path, "imagenet", "train", images_only=True)
    assert ds.names == [
        "n01440764/n01440764_10026",
        "n01440764/n01440764_10027",
        "n01443537/extra/n01443537_3",
        "n01443537/n01443537_2",
    ]  # hidden "._" files and notes.txt are not images
    item = ds[1]
    assert set(item) == {"image", "name"} and item["image"].shape == (3, 10, 4)
    assert item["image"].dtype == torch.float32
    with pytest.raises(DatasetError, match="split 'test' not found in imagenet"):
        open_dataset(tmp_path, "imagenet", "test", images_only=True)


def test_images_flat_and_per_split(tmp_path: Path) -> None:
    flat = fx.images(tmp_path / "flat")
    assert list_splits(flat, "images") == ["more", "all"]
    ds = open_dataset(flat, "images", "all", images_only=True)
    assert ds.names == ["a", "b", "more/c"]
    assert open_dataset(flat, "images", "more", images_only=True).names == ["c"]

    split = fx.images(tmp_path / "split", splits=True)
    assert list_splits(split, "images") == ["train", "val"]
    assert open_dataset(split, "images", "val", images_only=True).names == ["deeper/i11", "i10"]
    assert len(open_dataset(split, "images", "all", images_only=True)) == 4  # "all" always reads the whole tree
    with pytest.raises(DatasetError, match="split 'test' not found in images"):
        open_dataset(split, "images", "test", images_only=True)


def test_image_list_reads_paths_relative_to_the_root(tmp_path: Path) -> None:
    fx.image_list(tmp_path)
    assert list_splits(tmp_path, "image_list") == ["train", "val"]  # README.txt is not a list
    ds = open_dataset(tmp_path, "image_list", "train", images_only=True)
    assert ds.names == ["pool/a/0", "pool/b/1"]  # comment, blank line and the "label" column dropped
    assert ds[0]["image"].shape == (3, fx.H, fx.W)


def test_image_list_keeps_missing_entries_out_of_the_dataset(tmp_path: Path) -> None:
    fx.image_list(tmp_path)
    (tmp_path / "train.txt").write_text("pool/a/0.jpg\npool/gone.jpg\npool/a/0.jpg\n")
    listing = list_split(tmp_path, "image_list", "train", need_classes=False)
    assert [(s.name, s.image is not None) for s in listing.samples] == [("pool/a/0", True), ("pool/gone", False)]
    assert open_dataset(tmp_path, "image_list", "train", images_only=True).names == ["pool/a/0"]


@pytest.mark.parametrize("line", ["/etc/passwd", "../outside.jpg", "pool/../../x.jpg"])
def test_image_list_refuses_paths_outside_the_root(tmp_path: Path, line: str) -> None:
    fx.image_list(tmp_path)
    (tmp_path / "train.txt").write_text(f"pool/a/0.jpg\n{line}\n")
    with pytest.raises(DatasetError, match=r"train.txt line 2: .* not a path inside the dataset root"):
        open_dataset(tmp_path, "image_list", "train", images_only=True)


@pytest.mark.parametrize(("layout", "build", "split"), [
    ("imagenet", fx.imagenet, "train"), ("images", fx.images, "all"), ("image_list", fx.image_list, "train"),
])
def test_opening_an_image_set_for_labels_says_what_it_is(tmp_path: Path, layout: str, build, split: str) -> None:
    build(tmp_path)
    with pytest.raises(DatasetError, match=r"images-only set .* stage 1 .* stage 2 training and evaluation need a "
                                           r"labelled layout \(cityscapes, gta5"):
        open_dataset(tmp_path, layout, split)


def test_stage1_transform_on_an_image_set(tmp_path: Path) -> None:
    ds = open_dataset(fx.imagenet(tmp_path), "imagenet", "train", images_only=True, transform=Stage1Transform(8))
    assert ds[0]["image"].shape == (3, 8, 8)


def test_validate_image_sets(tmp_path: Path) -> None:
    report = validate_dataset(fx.imagenet(tmp_path), "imagenet")
    assert report.ok, report.summary()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["labels"] is False and data["classes"] is None
    train = data["splits"]["train"]
    assert train["images"] == 4 and train["pairs"] == 0 and train["masks_checked"] == 0
    assert train["image_size"] == {
        "count": 4,
        "width": {"min": 4, "max": 8, "median": 8.0},
        "height": {"min": 6, "max": 10, "median": 6.0},
    }
    assert "(images only)" in report.summary() and "train: 4 images" in report.summary()


def test_validate_image_set_problems(tmp_path: Path) -> None:
    fx.image_list(tmp_path)
    (tmp_path / "pool" / "b" / "1.png").write_bytes(b"not a png")
    (tmp_path / "val.txt").write_text("pool/b/2.webp\npool/b/missing.jpg\n")
    report = validate_dataset(tmp_path, "image_list")
    assert dict(report.problem_counts) == {"unreadable": 1, "missing_image": 1}
    assert {(p.kind, p.split, p.name) for p in report.problems} == {
        ("unreadable", "train", "pool/b/1"), ("missing_image", "val", "pool/b/missing"),
    }
    assert report.splits["train"].image_size is not None and report.splits["train"].image_size["count"] == 1


def test_validate_image_set_never_reads_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gkd_core.data.validation as validation

    def no_masks(path: Path) -> None:
        raise AssertionError(f"read a label file: {path}")

    monkeypatch.setattr(validation, "load_mask", no_masks)
    assert validate_dataset(fx.images(tmp_path, splits=True), "images", deep=True).ok


def test_empty_or_missing_image_sets(tmp_path: Path) -> None:
    report = validate_dataset(tmp_path / "nope", "images")
    assert dict(report.problem_counts) == {"layout": 1} and "does not exist" in report.problems[0].detail
    (tmp_path / "empty" / "train").mkdir(parents=True)
    report = validate_dataset(tmp_path / "empty", "imagenet")
    assert dict(report.problem_counts) == {"empty_split": 1}
    report = validate_dataset(tmp_path / "empty", "image_list")
    assert dict(report.problem_counts) == {"layout": 1} and "holds no 'image_list' splits" in report.problems[0].detail


def test_detect_prefers_labelled_layouts_over_the_images_catch_all(tmp_path: Path) -> None:
    from gkd_core.data import detect_layout

    assert detect_layout(fx.folder(tmp_path / "f")) == "folder"
    assert detect_layout(fx.cityscapes(tmp_path / "c")) == "cityscapes"
    assert detect_layout(fx.images(tmp_path / "i", splits=True)) == "images"

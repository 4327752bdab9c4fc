"""validate_dataset on clean and broken fixtures: every problem kind is reported and named."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gkd_core.data import validate_dataset
from gkd_core.errors import DatasetError
from tests.gkd_core.data import fixtures as fx


@pytest.mark.parametrize(
    ("build", "layout", "options"),
    [
        (fx.cityscapes, "cityscapes", {}),
        (lambda p: fx.cityscapes(p, label_type="labelIds"), "cityscapes", {}),
        (fx.gta5, "gta5", {}),
        (fx.acdc, "acdc", {}),
        (fx.acdc, "acdc", {"condition": "fog"}),
        (fx.bdd100k, "bdd100k", {}),
        (fx.mapillary, "mapillary", {}),
        (fx.mmseg, "mmseg", {"reduce_zero_label": True}),
        (fx.folder, "folder", {}),
    ],
)
def test_clean_fixtures_validate(tmp_path: Path, build, layout: str, options: dict) -> None:
    report = validate_dataset(build(tmp_path), layout, **options)
    assert report.ok, report.summary()
    assert report.splits and all(r.pairs > 0 and r.masks_checked == r.pairs for r in report.splits.values())
    report.raise_for_problems()  # no error when ok


def _kinds(report) -> dict[str, int]:
    return dict(report.problem_counts)


def test_missing_mask_and_missing_image(tmp_path: Path) -> None:
    fx.folder(tmp_path, n=3)
    (tmp_path / "masks" / "train" / "f1.png").unlink()
    (tmp_path / "images" / "val" / "f2.png").unlink()
    report = validate_dataset(tmp_path, "folder")
    assert _kinds(report) == {"missing_mask": 1, "missing_image": 1}
    assert report.splits["train"].images == 3 and report.splits["train"].masks == 2
    assert report.splits["train"].pairs == 2
    names = {(p.kind, p.split, p.name) for p in report.problems}
    assert names == {("missing_mask", "train", "f1"), ("missing_image", "val", "f2")}


def test_size_mismatch(tmp_path: Path) -> None:
    fx.folder(tmp_path)
    fx.save(tmp_path / "masks" / "train" / "f0.png", fx.mask([0, 1], h=5, w=8))
    report = validate_dataset(tmp_path, "folder")
    assert _kinds(report) == {"size_mismatch": 1}
    assert "6x8" in report.problems[0].detail and "5x8" in report.problems[0].detail


def test_label_values_outside_class_set(tmp_path: Path) -> None:
    fx.folder(tmp_path)  # 3 classes + 255
    fx.save(tmp_path / "masks" / "val" / "f1.png", fx.mask([0, 3, 7, 255]))
    report = validate_dataset(tmp_path, "folder")
    assert _kinds(report) == {"bad_label": 1}
    assert "[3, 7]" in report.problems[0].detail


def test_unreadable_files(tmp_path: Path) -> None:
    fx.folder(tmp_path)
    (tmp_path / "images" / "train" / "f0.png").write_bytes(b"not a png at all")
    (tmp_path / "masks" / "val" / "f1.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    report = validate_dataset(tmp_path, "folder")
    assert _kinds(report) == {"unreadable": 2}


def test_truncated_mask_found_when_decoded(tmp_path: Path) -> None:
    fx.folder(tmp_path)
    path = tmp_path / "masks" / "train" / "f1.png"
    data = path.read_bytes()
    path.write_bytes(data[:50])  # header intact, pixel data cut
    report = validate_dataset(tmp_path, "folder")
    assert _kinds(report) == {"unreadable": 1}


def test_empty_split_and_missing_split(tmp_path: Path) -> None:
    fx.folder(tmp_path)
    (tmp_path / "images" / "test").mkdir()
    (tmp_path / "masks" / "test").mkdir()
    report = validate_dataset(tmp_path, "folder")
    assert _kinds(report) == {"empty_split": 1}
    report = validate_dataset(tmp_path, "folder", splits=["train", "holdout"])
    assert _kinds(report) == {"missing_split": 1}


def test_wrong_layout(tmp_path: Path) -> None:
    fx.cityscapes(tmp_path)
    report = validate_dataset(tmp_path, "folder")
    assert not report.ok and _kinds(report) == {"layout": 1}
    assert "looks like the 'cityscapes' layout" in report.problems[0].detail
    with pytest.raises(DatasetError, match="unknown dataset layout"):
        validate_dataset(tmp_path, "pascal")


def test_missing_root(tmp_path: Path) -> None:
    report = validate_dataset(tmp_path / "nope", "folder")
    assert _kinds(report) == {"layout": 1} and "does not exist" in report.problems[0].detail


def test_report_is_json_ready_and_error_names_first_problems(tmp_path: Path) -> None:
    fx.folder(tmp_path, n=4)
    for i in range(4):
        (tmp_path / "masks" / "train" / f"f{i}.png").unlink()
    report = validate_dataset(tmp_path, "folder")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is False and data["problem_counts"] == {"missing_mask": 4}
    assert data["splits"]["val"]["pairs"] == 4 and data["classes"]["names"] == ["sky", "road", "car"]
    with pytest.raises(DatasetError) as err:
        report.raise_for_problems(limit=2)
    message = str(err.value)
    assert "missing_mask train/f0" in message and "missing_mask train/f1" in message
    assert "f3" not in message and "and 2 more" in message


def test_label_sampling_still_checks_every_pairing(tmp_path: Path) -> None:
    fx.folder(tmp_path, n=6)
    (tmp_path / "masks" / "train" / "f4.png").unlink()
    report = validate_dataset(tmp_path, "folder", splits=["train"], label_sample=2)
    assert report.splits["train"].masks_checked == 2 and report.splits["train"].pairs == 5
    assert _kinds(report) == {"missing_mask": 1}


def test_label_id_layout_flags_ids_beyond_the_table(tmp_path: Path) -> None:
    fx.gta5(tmp_path)
    fx.save(tmp_path / "labels" / "00001.png", fx.mask([7, 40]), mode="P")
    report = validate_dataset(tmp_path, "gta5")
    assert _kinds(report) == {"bad_label": 1} and "[40]" in report.problems[0].detail


def test_deep_mode_decodes_images(tmp_path: Path) -> None:
    fx.folder(tmp_path)
    path = tmp_path / "images" / "train" / "f1.png"
    data = path.read_bytes()
    path.write_bytes(data[:50])
    assert validate_dataset(tmp_path, "folder").ok  # header-only check cannot see it
    assert _kinds(validate_dataset(tmp_path, "folder", deep=True)) == {"unreadable": 1}


@pytest.mark.parametrize("layout, build", [("gta5", fx.gta5), ("imagenet", fx.imagenet)])
def test_on_file_is_called_per_file_and_what_it_raises_ends_the_validation(
    tmp_path: Path, layout: str, build: Callable[[Path], Path]
) -> None:
    root = build(tmp_path / layout)
    calls: list[None] = []
    report = validate_dataset(root, layout, on_file=lambda: calls.append(None))
    assert report.ok and len(calls) == sum(split.images for split in report.splits.values())

    class Enough(Exception):
        pass

    def stop_at_second() -> None:
        calls.append(None)
        if len(calls) == 2:
            raise Enough

    calls.clear()
    with pytest.raises(Enough):
        validate_dataset(root, layout, on_file=stop_at_second)
    assert len(calls) == 2

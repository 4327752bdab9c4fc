"""Mapillary Vistas v1.2 labels mapped to the 19 Cityscapes train ids by the fixed table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gkd_core.data import CITYSCAPES_CLASSES, detect_layout, open_dataset, validate_dataset
from gkd_core.data.vistas_labels import VISTAS_ID_TO_TRAIN_ID, VISTAS_V12_CLASSES, vistas_lut
from gkd_core.errors import DatasetError
from tests.gkd_core.data import fixtures as fx


def test_table_covers_all_19_train_ids_by_name() -> None:
    assert len(VISTAS_V12_CLASSES) == 66 and VISTAS_V12_CLASSES[65] == "void--unlabeled"
    assert sorted(set(VISTAS_ID_TO_TRAIN_ID.values())) == list(range(19))
    named = {VISTAS_V12_CLASSES[v]: CITYSCAPES_CLASSES[t] for v, t in VISTAS_ID_TO_TRAIN_ID.items()}
    assert named["construction--flat--road"] == "road" and named["object--vehicle--on-rails"] == "train"
    assert named["human--rider--motorcyclist"] == "rider" and named["construction--barrier--curb"] == "sidewalk"
    assert "construction--flat--bike-lane" not in named and "object--traffic-sign--back" not in named
    lut = vistas_lut()
    assert lut.shape == (256,) and int(lut[13]) == 0 and int(lut[7]) == 255 and int(lut[200]) == 255


@pytest.mark.parametrize("v2_download", [False, True])
def test_vistas_labels_are_mapped(tmp_path: Path, v2_download: bool) -> None:
    fx.mapillary_vistas(tmp_path, v2_download=v2_download)
    assert detect_layout(tmp_path) == "mapillary"
    ds = open_dataset(tmp_path, "mapillary", "val", label_type="vistas")
    assert len(ds) == 2 and ds.num_classes == 19
    expected = np.vectorize(fx.VISTAS_AS_TRAIN.get)(fx.mask(fx.VISTAS_IDS))
    assert ds[0]["mask"].numpy().tolist() == expected.tolist()


def test_vistas_validation_accepts_the_66_ids_and_flags_others(tmp_path: Path) -> None:
    fx.mapillary_vistas(tmp_path)
    report = validate_dataset(tmp_path, "mapillary", label_type="vistas")
    assert report.ok, report.summary()
    assert report.splits["training"].label_values == sorted(fx.VISTAS_IDS)
    # Read as train ids (the default), Vistas ids above 18 are flagged.
    assert dict(validate_dataset(tmp_path, "mapillary").problem_counts) == {"bad_label": 4}
    fx.save(tmp_path / "training" / "labels" / "k1.png", fx.mask([13, 70]), mode="P")
    report = validate_dataset(tmp_path, "mapillary", label_type="vistas")
    assert dict(report.problem_counts) == {"bad_label": 1} and "[70]" in report.problems[0].detail


def test_label_type_choices(tmp_path: Path) -> None:
    fx.mapillary(tmp_path)
    assert open_dataset(tmp_path, "mapillary", "val", label_type="trainIds").num_classes == 19
    with pytest.raises(DatasetError, match="label_type must be one of 'trainIds', 'vistas'"):
        open_dataset(tmp_path, "mapillary", "val", label_type="labelIds")

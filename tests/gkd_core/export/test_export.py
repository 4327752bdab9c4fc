"""Export: safetensors round trip from the file alone, ONNX parity with dynamic batch, model card."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml

from gkd_core.errors import CheckpointError
from gkd_core.export import ExportMeta, export_all, export_onnx, load_student, read_export_meta, save_student
from gkd_core.models.heads import build_head
from gkd_core.stages.stage2 import SegmentationModel, level_dims, level_indices
from tests.gkd_core.stage2.fakes import TinyLevelBackbone


def _fake_builder(meta: ExportMeta) -> torch.nn.Module:
    return TinyLevelBackbone(**meta.overrides)


def _model(head: str = "fpn") -> tuple[SegmentationModel, ExportMeta]:
    torch.manual_seed(0)
    overrides = {"embed_dim": 8, "depth": 3}
    backbone = TinyLevelBackbone(**overrides)
    indices = level_indices(backbone.num_blocks)
    model = SegmentationModel(backbone, build_head(head, level_dims(backbone, indices), 4, channels=8), indices)
    # Move BatchNorm statistics off their defaults so the round trip checks buffers too.
    model.head.train()
    with torch.no_grad():
        model(torch.rand(2, 3, 32, 32))
    meta = ExportMeta(
        model="tiny_fake",
        num_classes=4,
        head=head,
        head_channels=8,
        indices=indices,
        image_size=32,
        backbone_img_size=32,
        overrides=overrides,
        classes=["road", "car", "sky", "tree"],
    )
    return model.eval(), meta


@pytest.mark.parametrize("head", ["linear", "fpn"])
def test_safetensors_round_trip_from_file_alone(tmp_path: Path, head: str) -> None:
    model, meta = _model(head)
    path = save_student(model, tmp_path / "student.safetensors", meta)
    loaded, meta2 = load_student(path, backbone_builder=_fake_builder)
    assert meta2 == meta
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert not loaded.training


def test_loader_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match=r"junk\.safetensors"):
        read_export_meta(bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_export_meta(tmp_path / "missing.safetensors")


def test_onnx_matches_torch_for_batch_1_and_3(tmp_path: Path) -> None:
    model, meta = _model("fpn")
    path = export_onnx(model, tmp_path / "student.onnx", meta.image_size)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.rand(batch, 3, 32, 32)
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = session.run(["logits"], {"images": x.numpy()})
        assert got.shape == (batch, 4, 32, 32)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_model_card_has_per_domain_model_index(tmp_path: Path) -> None:
    model, meta = _model("linear")
    results = {
        "target_a": {"miou": 0.5, "per_class_iou": [0.5, None], "pixel_accuracy": 0.8, "images": 3},
        "target_b": {"miou": 0.25, "per_class_iou": [0.25, float("nan")], "pixel_accuracy": 0.6, "images": 3},
    }
    refs = {"teacher": {"target_a": {"miou": 0.7, "per_class_iou": [], "pixel_accuracy": 0.9, "images": 3}}}
    paths = export_all(model, meta, tmp_path, results, refs, source="source", onnx=False)
    assert set(paths) == {"student", "model_card", "readme"}
    text = paths["readme"].read_text()
    front = yaml.safe_load(text.split("---")[1])
    entries = front["model-index"][0]["results"]
    by_domain = {e["dataset"]["name"]: e["metrics"][0]["value"] for e in entries}
    assert by_domain == {"target_a": 50.0, "target_b": 25.0}
    import json

    card = json.loads(paths["model_card"].read_text())
    assert card["results"]["target_b"]["per_class_iou"] == [0.25, None]
    assert card["references"]["teacher"]["target_a"]["miou"] == 0.7
    assert card["model"]["classes"] == meta.classes

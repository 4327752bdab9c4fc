"""Export of a ViT student + Mask2Former head: file-alone round trip, ONNX parity, model card."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from gkd_core.config import BackboneConfig
from gkd_core.errors import CheckpointError
from gkd_core.export import ExportMeta, export_all, load_student, read_export_meta, save_student
from gkd_core.models.backbone import build_backbone
from gkd_core.stages.stage2 import SegmentationModel, build_segmentation_model

TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2}
OPTIONS = {"num_queries": 5, "num_layers": 2, "encoder_layers": 1}


@pytest.fixture(scope="module")
def student() -> tuple[SegmentationModel, ExportMeta]:
    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig("vit_tiny_patch16_224", img_size=32, overrides=TINY))
    model = build_segmentation_model(backbone, "mask2former", 4, channels=16, head_options=OPTIONS)
    meta = ExportMeta(
        model="vit_tiny_patch16_224",
        num_classes=4,
        head="mask2former",
        head_channels=16,
        indices=list(model.indices),
        image_size=32,
        backbone_img_size=32,
        overrides=TINY,
        classes=["road", "car", "sky", "tree"],
    )
    return model.eval(), meta


def test_round_trip_rebuilds_the_head_from_the_file_alone(
    tmp_path: Path, student: tuple[SegmentationModel, ExportMeta]
) -> None:
    model, meta = student
    path = save_student(model, tmp_path / "student.safetensors", meta)
    stored = read_export_meta(path)
    assert stored.head == "mask2former"
    assert stored.head_options["num_queries"] == 5 and stored.head_options["num_layers"] == 2
    assert stored.head_options["encoder_layers"] == 1 and stored.head_options["num_points"] == 12544
    loaded, meta2 = load_student(path)  # the default builder: timm model from the header
    assert meta2 == replace(meta, head_options=model.head.options())
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_save_refuses_a_header_that_does_not_describe_the_head(
    tmp_path: Path, student: tuple[SegmentationModel, ExportMeta]
) -> None:
    model, meta = student
    with pytest.raises(CheckpointError, match="head is Mask2FormerHead"):
        save_student(model, tmp_path / "a.safetensors", replace(meta, head="fpn"))
    with pytest.raises(CheckpointError, match="differ"):
        save_student(model, tmp_path / "b.safetensors", replace(meta, head_options={"num_queries": 100}))


def test_onnx_matches_torch_for_batch_1_and_2(tmp_path: Path, student: tuple[SegmentationModel, ExportMeta]) -> None:
    model, meta = student
    paths = export_all(model, meta, tmp_path, {"target": {"miou": 0.5, "pixel_accuracy": 0.75}}, source="src")
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(1)
    for batch in (1, 2):
        x = torch.rand(batch, 3, 32, 32, generator=g)
        with torch.no_grad():
            expected = model(x).numpy()
        (got,) = session.run(["logits"], {"images": x.numpy()})
        assert got.shape == (batch, 4, 32, 32)
        np.testing.assert_allclose(got, expected, atol=1e-3, rtol=0)
    readme = paths["readme"].read_text()
    assert "`mask2former` head (16 channels, 5 queries, 2 decoder layers, 1 pixel-decoder layers)" in readme
    assert "softmax(class) x sigmoid(mask)" in readme
    card = json.loads(paths["model_card"].read_text())
    assert card["model"]["head"] == "mask2former" and card["model"]["head_options"]["num_queries"] == 5

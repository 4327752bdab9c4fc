"""An exported student (backbone + head) loads as backbone weights: one job's student, next job's teacher."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import torch

from gkd_core.config import BackboneConfig
from gkd_core.errors import ConfigError
from gkd_core.export import ExportMeta, save_student
from gkd_core.models.backbone import build_backbone
from gkd_core.stages.stage2 import build_segmentation_model

TINY = {"depth": 2, "embed_dim": 32, "num_heads": 2}


def _export(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    cfg = BackboneConfig(model="vit_tiny_patch16_224", img_size=32, overrides=TINY)
    model = build_segmentation_model(build_backbone(cfg), "linear", 3)
    meta = ExportMeta(
        model="vit_tiny_patch16_224",
        num_classes=3,
        head="linear",
        head_channels=128,
        indices=list(model.indices),
        image_size=32,
        backbone_img_size=32,
        overrides=TINY,
        classes=["a", "b", "c"],
    )
    return save_student(model, tmp_path / "student.safetensors", meta), model


def test_exported_student_loads_as_backbone_weights(tmp_path: Path) -> None:
    path, model = _export(tmp_path)
    cfg = BackboneConfig(model="vit_tiny_patch16_224", weights=str(path), img_size=32, overrides=TINY)
    loaded = build_backbone(cfg)
    source = cast(Any, model).backbone.model.state_dict()
    target = loaded.model.state_dict()
    assert source.keys() == target.keys()
    assert all(torch.equal(source[k], target[k]) for k in source)


def test_exported_student_does_not_fit_another_width(tmp_path: Path) -> None:
    path, _ = _export(tmp_path)
    wider = {**TINY, "embed_dim": 48}
    with pytest.raises(ConfigError, match="first mismatching key"):
        build_backbone(BackboneConfig(model="vit_tiny_patch16_224", weights=str(path), img_size=32, overrides=wider))

"""A distilled DeiT student loses its distillation token and that token's position slot (official GKD code)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from gkd_core.config import BackboneConfig
from gkd_core.models import build_backbone

TINY: dict[str, Any] = {"depth": 2}


def test_distilled_deit_becomes_a_plain_vit_with_its_weights(tmp_path: Path) -> None:
    import timm  # after gkd_core, which makes torchvision (and so timm) importable on CPU torch

    torch.manual_seed(0)
    distilled: Any = timm.create_model("deit_tiny_distilled_patch16_224", num_classes=0, img_size=32, **TINY)
    weights = tmp_path / "deit_distilled.safetensors"
    save_file({k: v.contiguous() for k, v in distilled.state_dict().items()}, str(weights))

    student = build_backbone(BackboneConfig("deit_tiny_distilled_patch16_224", str(weights), 32, dict(TINY)))
    model = student.model
    assert getattr(model, "dist_token", None) is None and student.num_prefix_tokens == 1
    pos = distilled.state_dict()["pos_embed"]
    assert torch.equal(model.pos_embed[:, :1], pos[:, :1])  # CLS slot kept
    assert torch.equal(model.pos_embed[:, 1:], pos[:, 2:])  # the distillation slot (index 1) is gone
    assert torch.equal(model.blocks[1].mlp.fc2.weight, distilled.blocks[1].mlp.fc2.weight)
    out = student.forward_tokens(torch.rand(2, 3, 32, 32))
    assert out.patches.shape == (2, 4, 192) and out.cls.shape == (2, 192)


def test_plain_models_are_untouched() -> None:
    student = build_backbone(BackboneConfig("deit_tiny_patch16_224", img_size=32, overrides=dict(TINY)))
    assert type(student.model).__name__ == "VisionTransformer" and student.num_prefix_tokens == 1

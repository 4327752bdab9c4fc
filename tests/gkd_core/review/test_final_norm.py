"""Teacher targets are tokens after the final LayerNorm, also where timm keeps it in fc_norm (EVA02)."""

from __future__ import annotations

import torch

from gkd_core.config import BackboneConfig
from gkd_core.models.backbone import build_backbone


def test_avg_pool_model_tokens_go_through_fc_norm() -> None:
    torch.manual_seed(0)
    backbone = build_backbone(
        BackboneConfig(model="eva02_tiny_patch14_224", img_size=28, overrides={"depth": 1})
    ).eval()
    with torch.no_grad():
        # LayerNorm without affine drift: every token is normalised to mean 0 and unit variance.
        backbone.model.fc_norm.weight.fill_(1.0)
        backbone.model.fc_norm.bias.zero_()
        tokens = backbone.forward_tokens(torch.rand(2, 3, 28, 28)).patches
    assert torch.allclose(tokens.mean(dim=-1), torch.zeros(2, 4), atol=1e-4)
    assert torch.allclose(tokens.var(dim=-1, unbiased=False), torch.ones(2, 4), atol=1e-2)


def test_token_pooled_model_is_unchanged() -> None:
    backbone = build_backbone(
        BackboneConfig(
            model="vit_tiny_patch16_224", img_size=32, overrides={"depth": 1, "embed_dim": 32, "num_heads": 2}
        )
    ).eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = backbone.model.forward_features(backbone.normalize(x))[:, 1:]
        assert torch.allclose(backbone.forward_tokens(x).patches, expected, atol=1e-6)

"""Backbones: shapes, normalisation, masking at the embedding level, weights loading and errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from gkd_core.config import BackboneConfig
from gkd_core.errors import ConfigError
from gkd_core.models import build_backbone
from tests.gkd_core.models.tiny import tiny_resnet, tiny_student, tiny_teacher


def test_vit_tokens_and_levels_have_expected_shapes() -> None:
    torch.manual_seed(0)
    bb = build_backbone(tiny_student(img_size=64))
    x = torch.rand(2, 3, 64, 64)
    out = bb.forward_tokens(x)
    assert (bb.embed_dim, bb.patch_size, bb.num_blocks) == (32, 16, 2)
    assert out.cls.shape == (2, 32) and out.patches.shape == (2, 16, 32) and out.grid == (4, 4)
    assert torch.isfinite(out.patches).all() and torch.isfinite(out.cls).all()
    levels = bb.forward_levels(x)
    assert len(levels) == 4 and all(f.shape == (2, 32, 4, 4) for f in levels)
    # The final-normed tokens equal timm's own forward_features (our piecewise run is faithful).
    ref = bb.model.forward_features(bb.normalize(x))
    torch.testing.assert_close(out.patches, ref[:, 1:])
    torch.testing.assert_close(out.cls, ref[:, 0])


def test_default_levels_follow_blocks_4_6_8_12_of_12() -> None:
    overrides = {"depth": 12, "embed_dim": 32, "num_heads": 2}
    bb = build_backbone(BackboneConfig("vit_tiny_patch16_224", img_size=32, overrides=overrides))
    assert bb.default_level_indices() == [3, 5, 7, 11]


def test_normalize_uses_pretrained_mean_std() -> None:
    bb = build_backbone(tiny_student())
    mean = torch.tensor(bb.model.pretrained_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(bb.model.pretrained_cfg["std"]).view(1, 3, 1, 1)
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(bb.normalize(x), (x - mean) / std)


def test_cnn_tokens_are_the_last_map_and_its_mean() -> None:
    bb = build_backbone(tiny_resnet())
    x = torch.rand(2, 3, 64, 64)
    out = bb.forward_tokens(x)
    fmap = bb.model.forward_intermediates(bb.normalize(x), indices=[4], intermediates_only=True)[-1]
    assert out.grid == (2, 2) == bb.grid_for(64)
    torch.testing.assert_close(out.patches, fmap.flatten(2).transpose(1, 2))
    torch.testing.assert_close(out.cls, out.patches.mean(1))
    assert [f.shape[-1] for f in bb.forward_levels(x)] == [16, 8, 4, 2]
    with pytest.raises(ConfigError, match="mask_probability=0"):
        bb.forward_tokens(x, torch.zeros(2, 4, dtype=torch.bool))


def test_mask_token_replaces_patch_embeddings_before_position_embedding(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    bb = build_backbone(tiny_student(img_size=64))
    x = torch.rand(2, 3, 64, 64)
    seen: list[torch.Tensor] = []
    original = bb.model._pos_embed

    def spy(tokens: torch.Tensor) -> Any:
        seen.append(tokens.detach().clone())
        return original(tokens)

    monkeypatch.setattr(bb.model, "_pos_embed", spy)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[0, [1, 5, 6, 11]] = True
    bb.forward_tokens(x, mask)
    embedded = bb.model.patch_embed(bb.normalize(x))
    assert bb.mask_token is not None
    before_pos = seen[0]
    # Masked positions hold exactly the learnable token; everything else is the untouched embedding.
    torch.testing.assert_close(before_pos[0, mask[0]], bb.mask_token[0].expand(4, -1))
    torch.testing.assert_close(before_pos[~mask], embedded[~mask])
    torch.testing.assert_close(before_pos[1], embedded[1])
    # Position embeddings are added after the replacement: masked positions still differ from each other.
    out = bb.forward_tokens(x, mask)
    assert not torch.allclose(out.patches[0, 1], out.patches[0, 5])


def test_mask_gets_gradient_and_bad_mask_shape_is_rejected() -> None:
    bb = build_backbone(tiny_student())
    mask = torch.tensor([[True, False, False, True]])
    bb.forward_tokens(torch.rand(1, 3, 32, 32), mask).patches.sum().backward()
    assert bb.mask_token is not None and bb.mask_token.grad is not None
    assert bb.mask_token.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="mask must be bool"):
        bb.forward_tokens(torch.rand(1, 3, 32, 32), torch.zeros(1, 3, dtype=torch.bool))


def test_unknown_model_name_lists_close_matches() -> None:
    with pytest.raises(ConfigError, match=r"unknown timm model 'vit_tiny_patch16_22'.*vit_tiny_patch16_224"):
        build_backbone(BackboneConfig("vit_tiny_patch16_22"))


def test_model_without_forward_intermediates_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    class Plain(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    monkeypatch.setattr(timm, "create_model", lambda *a, **k: Plain())
    with pytest.raises(ConfigError, match="no forward_intermediates"):
        build_backbone(BackboneConfig("resnet18"))


def test_bad_overrides_and_offline_hub_give_clear_errors() -> None:
    with pytest.raises(ConfigError, match="invalid overrides"):
        build_backbone(BackboneConfig("resnet18", overrides={"no_such_arg": 1}))
    with pytest.raises(ConfigError, match="could not fetch timm pretrained weights"):
        build_backbone(BackboneConfig("vit_tiny_patch16_224", weights="timm", img_size=32, overrides={"depth": 1}))


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_weights_round_trip(tmp_path: Path, suffix: str) -> None:
    torch.manual_seed(1)
    source = build_backbone(tiny_teacher())
    state = {k: v.contiguous() for k, v in source.model.state_dict().items()}
    path = tmp_path / f"teacher{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    torch.manual_seed(2)
    loaded = build_backbone(tiny_teacher(weights=str(path)))
    for key, value in loaded.model.state_dict().items():
        torch.testing.assert_close(value, state[key], msg=key)


def test_pickled_objects_are_refused_by_weights_only_loading(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(1), "callback": Path("x")}, path)
    with pytest.raises(ConfigError, match="weights_only=True"):
        build_backbone(tiny_teacher(weights=str(path)))


def test_mismatching_weights_name_the_first_bad_key(tmp_path: Path) -> None:
    wide = build_backbone(tiny_student())  # width 32
    path = tmp_path / "student.safetensors"
    save_file({k: v.contiguous() for k, v in wide.model.state_dict().items()}, str(path))
    cfg = BackboneConfig(
        "vit_tiny_patch16_224", weights=str(path), img_size=32, overrides={"depth": 2, "embed_dim": 64, "num_heads": 2}
    )
    target = build_backbone(BackboneConfig(cfg.model, img_size=32, overrides=cfg.overrides))
    first_bad = next(
        k for k, v in target.model.state_dict().items() if v.shape != wide.model.state_dict()[k].shape
    )
    with pytest.raises(ConfigError, match=f"first mismatching key '{first_bad}'"):
        build_backbone(cfg)


def test_missing_file_and_bad_suffix_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        build_backbone(BackboneConfig("resnet18", weights=str(tmp_path / "nope.safetensors")))
    bad = tmp_path / "w.npz"
    bad.write_bytes(b"0")
    with pytest.raises(ConfigError, match="unsupported suffix"):
        build_backbone(BackboneConfig("resnet18", weights=str(bad)))


@pytest.mark.parametrize(
    ("name", "overrides", "size", "prefix"),
    [
        ("deit_tiny_patch16_224", {"depth": 2, "embed_dim": 32, "num_heads": 2}, 32, 1),
        ("vit_small_patch14_reg4_dinov2", {"depth": 2, "embed_dim": 32, "num_heads": 2}, 28, 5),
        ("eva02_tiny_patch14_224", {"depth": 2, "embed_dim": 32, "num_heads": 2}, 28, 1),
        ("vit_tiny_patch16_224", {"depth": 2, "embed_dim": 32, "num_heads": 2, "dynamic_img_size": True}, 32, 1),
    ],
)
def test_vit_families_run_piecewise_like_timm(name: str, overrides: dict[str, Any], size: int, prefix: int) -> None:
    torch.manual_seed(0)
    bb = build_backbone(BackboneConfig(name, img_size=size, overrides=overrides))
    assert bb.is_vit and bb.num_prefix_tokens == prefix
    x = torch.rand(2, 3, size, size)
    bb.eval()
    out = bb.forward_tokens(x)
    ref = bb.model.forward_features(bb.normalize(x))  # registers / rope / NHWC handled like timm
    if isinstance(bb.model.norm, torch.nn.Identity) and not isinstance(bb.model.fc_norm, torch.nn.Identity):
        ref = bb.model.fc_norm(ref)  # average-pooled models (EVA02): the final LayerNorm lives in fc_norm
    torch.testing.assert_close(out.patches, ref[:, prefix:])
    torch.testing.assert_close(out.cls, ref[:, 0])
    mask = torch.zeros(2, out.patches.shape[1], dtype=torch.bool)
    mask[0, :2] = True
    masked = bb.forward_tokens(x, mask)
    assert not torch.allclose(masked.patches[0], out.patches[0])
    torch.testing.assert_close(masked.patches[1], out.patches[1])


def test_convnext_is_a_cnn_backbone() -> None:
    bb = build_backbone(BackboneConfig("convnext_atto", img_size=64, overrides={"depths": (1, 1, 1, 1)}))
    assert not bb.is_vit and not bb.supports_masking
    out = bb.forward_tokens(torch.rand(1, 3, 64, 64))
    assert out.grid == (2, 2) and out.patches.shape == (1, 4, bb.embed_dim)
    assert len(bb.forward_levels(torch.rand(1, 3, 64, 64))) == 4

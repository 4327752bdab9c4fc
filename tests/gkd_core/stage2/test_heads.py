"""Decode heads: registry, shapes at the input size, and clear errors."""

from __future__ import annotations

import pytest
import torch

from gkd_core.errors import ConfigError
from gkd_core.models.heads import HEADS, FPNHead, LinearHead, build_head
from gkd_core.models.mask2former import Mask2FormerHead

# Small enough for CPU tests; the other heads take no options.
TINY_OPTIONS = {"mask2former": {"num_queries": 4, "num_layers": 2, "encoder_layers": 1, "num_points": 64}}


def _levels(batch: int = 2, dims: tuple[int, ...] = (8, 12, 16, 20), size: int = 64) -> list[torch.Tensor]:
    return [torch.randn(batch, d, size // s, size // s) for d, s in zip(dims, (4, 8, 16, 32), strict=True)]


def test_registry_lists_every_head() -> None:
    assert {"linear": LinearHead, "fpn": FPNHead, "mask2former": Mask2FormerHead} == HEADS


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_outputs_logits_at_input_size(name: str) -> None:
    cls = HEADS[name]
    head = build_head(name, [8, 12, 16, 20], num_classes=5, channels=16, **TINY_OPTIONS.get(name, {}))
    assert isinstance(head, cls)
    logits = head(_levels(), (64, 48))
    assert logits.shape == (2, 5, 64, 48)
    stride4 = head(_levels())
    assert stride4.shape == (2, 5, 16, 16)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_uses_every_level(name: str) -> None:
    """A gradient reaches each of the four input maps (no level is silently dropped)."""
    head = build_head(name, [8, 8, 8, 8], num_classes=3, channels=8, **TINY_OPTIONS.get(name, {}))
    feats = [f.requires_grad_(True) for f in _levels(dims=(8, 8, 8, 8))]
    head(feats, (64, 64)).sum().backward()
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in feats)


def test_build_head_errors() -> None:
    with pytest.raises(ConfigError, match="unknown head 'segformer'"):
        build_head("segformer", [8] * 4, 3)
    with pytest.raises(ConfigError, match="takes no option"):
        build_head("fpn", [8] * 4, 3, num_queries=4)
    with pytest.raises(ConfigError, match="valid options"):
        build_head("mask2former", [8] * 4, 3, channels=8, queries=4)
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        build_head("mask2former", [8] * 4, 3, channels=12)
    with pytest.raises(ConfigError, match="4 positive input widths"):
        build_head("fpn", [8, 8], 3)
    with pytest.raises(ConfigError, match="num_classes"):
        build_head("linear", [8] * 4, 0)
    head = build_head("linear", [8] * 4, 3)
    with pytest.raises(ValueError, match="expects 4 feature maps"):
        head(_levels(dims=(8, 8, 8, 8))[:3])

"""Tiny backbone configs shared by the models and stage-1 tests (depth 2, width 32-48, 32-112 px)."""

from __future__ import annotations

from gkd_core.config import BackboneConfig


def tiny_student(img_size: int = 32, **extra: object) -> BackboneConfig:
    """A 2-block, 32-wide ViT/16 student."""
    return BackboneConfig(
        "vit_tiny_patch16_224", img_size=img_size, overrides={"depth": 2, "embed_dim": 32, "num_heads": 2, **extra}
    )


def tiny_teacher(img_size: int = 32, weights: str = "none") -> BackboneConfig:
    """A 2-block, 48-wide DINOv2-style ViT/14 teacher."""
    return BackboneConfig(
        "vit_small_patch14_dinov2",
        weights=weights,
        img_size=img_size,
        overrides={"depth": 2, "embed_dim": 48, "num_heads": 2},
    )


def tiny_resnet(img_size: int = 64) -> BackboneConfig:
    """A ResNet with one block per stage (the CNN path)."""
    return BackboneConfig("resnet18", img_size=img_size, overrides={"layers": [1, 1, 1, 1]})

"""The model zoo: a curated table (no torch needed) plus lazy timm look-ups for other names.

Feature-matching rule (checked before a job is queued):
1. both models must expose timm's feature API, ``forward_intermediates`` (the pipeline taps
   features with it);
2. for gkd and proteus the teacher must be a plain ViT ("vit" kind: one patch-token grid, the
   foundation-model setting the method distils from); hierarchical or CNN teachers only work
   with kd, cwd, feature_mse and none;
3. image and crop sizes must be multiples of the student's patch size (ViT students).
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any, Literal

_logger = logging.getLogger(__name__)

Kind = Literal["vit", "cnn", "hierarchical"]


@dataclass(frozen=True)
class ModelMeta:
    """What the service needs to know about a backbone."""

    name: str
    family: str
    kind: Kind
    params_m: float
    embed_dim: int
    patch_size: int | None
    feature_api: str = "forward_intermediates"
    roles: tuple[str, ...] = ("teacher", "student")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["roles"] = list(self.roles)
        return data


_T, _S, _TS = ("teacher",), ("student",), ("teacher", "student")

# Figures measured with timm 1.0 (meta device): parameters in millions, final feature width.
CURATED: tuple[ModelMeta, ...] = (
    ModelMeta("vit_small_patch14_dinov2", "dinov2", "vit", 22.1, 384, 14, roles=_T),
    ModelMeta("vit_base_patch14_dinov2", "dinov2", "vit", 86.6, 768, 14, roles=_T),
    ModelMeta("vit_large_patch14_dinov2", "dinov2", "vit", 304.4, 1024, 14, roles=_T),
    ModelMeta("vit_giant_patch14_dinov2", "dinov2", "vit", 1136.5, 1536, 14, roles=_T),
    ModelMeta("vit_small_patch14_reg4_dinov2", "dinov2", "vit", 22.1, 384, 14, roles=_T),
    ModelMeta("vit_base_patch16_clip_224", "clip", "vit", 86.6, 768, 16, roles=_T),
    ModelMeta("vit_base_patch16_224", "vit", "vit", 86.6, 768, 16, roles=_TS),
    ModelMeta("vit_small_patch16_224", "vit", "vit", 22.1, 384, 16, roles=_TS),
    ModelMeta("vit_tiny_patch16_224", "vit", "vit", 5.7, 192, 16, roles=_S),
    ModelMeta("deit_small_patch16_224", "deit", "vit", 22.1, 384, 16, roles=_S),
    ModelMeta("deit_tiny_patch16_224", "deit", "vit", 5.7, 192, 16, roles=_S),
    ModelMeta("resnet18", "resnet", "cnn", 11.7, 512, None, roles=_S),
    ModelMeta("resnet50", "resnet", "cnn", 25.6, 2048, None, roles=_S),
    ModelMeta("convnext_tiny", "convnext", "cnn", 28.6, 768, None, roles=_S),
    ModelMeta("efficientnet_b0", "efficientnet", "cnn", 5.3, 1280, None, roles=_S),
    ModelMeta("mobilenetv3_large_100", "mobilenetv3", "cnn", 5.5, 960, None, roles=_S),
    ModelMeta("swin_tiny_patch4_window7_224", "swin", "hierarchical", 28.3, 768, 4, roles=_S),
    # timm's tiny test models: for smoke tests and the synthetic demo (seconds on a CPU).
    ModelMeta("test_vit", "test", "vit", 0.37, 64, 16, roles=_TS),
    ModelMeta("test_resnet", "test", "cnn", 0.47, 96, None, roles=_S),
    ModelMeta("test_convnext", "test", "cnn", 0.27, 64, None, roles=_S),
)
_BY_NAME = {meta.name: meta for meta in CURATED}


def curated_models() -> list[ModelMeta]:
    """The curated zoo, teachers first."""
    return list(CURATED)


def _arch(name: str) -> str:
    """Strip a timm pretrained tag (``vit_base_patch14_dinov2.lvd142m`` -> the architecture)."""
    return name.split(".", 1)[0]


@lru_cache(maxsize=1)
def _timm_names() -> tuple[str, ...]:
    import gkd_core  # noqa: F401  (installs the torchvision shim before timm)

    # isort: split
    import timm

    return tuple(timm.list_models())


@lru_cache(maxsize=256)
def _inspect_timm(arch: str) -> ModelMeta | None:
    """Build the model on the meta device (no memory, no weights) and read its feature metadata."""
    if arch not in _timm_names():
        return None
    import gkd_core  # noqa: F401

    # isort: split
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    patch_size = int(patch[0]) if isinstance(patch, tuple | list) else (int(patch) if patch else None)
    embed = getattr(model, "embed_dim", None)
    hierarchical = not isinstance(embed, int) or not hasattr(model, "blocks")
    kind: Kind = "vit" if patch_size and not hierarchical else ("hierarchical" if patch_size else "cnn")
    return ModelMeta(
        name=arch,
        family=arch.split("_", 1)[0],
        kind=kind,
        params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        embed_dim=int(getattr(model, "num_features", 0) or 0),
        patch_size=patch_size,
        feature_api="forward_intermediates" if hasattr(model, "forward_intermediates") else "none",
    )


def lookup(name: str) -> ModelMeta | None:
    """Metadata for a model name (curated table first, then timm); None when timm does not know it."""
    arch = _arch(name)
    return _BY_NAME.get(arch) or _inspect_timm(arch)


def close_matches(name: str, limit: int = 5) -> list[str]:
    """Known names that look like ``name`` (for 'did you mean' messages)."""
    candidates = list(_BY_NAME) + list(_timm_names())
    return difflib.get_close_matches(_arch(name), candidates, n=limit, cutoff=0.6)

"""Teacher and student backbones built from any timm model with ``forward_intermediates``.

GKD (Lv et al., CVPR 2026, Sec. 3) distills the final normalised tokens of a vision foundation
model into a smaller ViT (stage 1) and then reads four block features of the frozen student
(stage 2). :class:`Backbone` gives both stages one interface over timm models:

* ``normalize``: images enter as float RGB in [0, 1]; each backbone applies its own pretrained mean/std.
* ``forward_tokens``: final-normed CLS + patch tokens. ViTs are run piece by piece
  (``patch_embed`` -> mask-token replacement -> ``_pos_embed`` -> ``norm_pre`` -> blocks -> ``norm``)
  so the stage-1 mask token replaces patch embeddings *before* position embeddings are added, as in
  the paper. CNNs give their last feature map as patches and its global average as CLS.
* ``forward_levels``: raw maps of four blocks at the backbone's own stride (timm ``forward_intermediates``).

Masking on CNN students is not supported (a clear ``ConfigError``): the paper's masked view is
defined on ViT patch embeddings; stage 1 with a CNN student needs ``mask_probability=0``.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gkd_core.config import BackboneConfig
from gkd_core.errors import ConfigError
from gkd_core.models._weights import apply_state_dict, read_state_dict

_logger = logging.getLogger(__name__)

# Stage 2 taps blocks 4, 6, 8, 12 of a 12-block ViT: the same fractions of any depth.
_LEVEL_FRACTIONS = (4 / 12, 6 / 12, 8 / 12, 12 / 12)


@dataclass(frozen=True)
class TokenOutput:
    """Final-normed tokens of one forward pass.

    Attributes:
        cls: B x C (ViT class token; CNN global average pool).
        patches: B x N x C, row-major over ``grid``.
        grid: (h, w) with h * w == N.
    """

    cls: torch.Tensor
    patches: torch.Tensor
    grid: tuple[int, int]


def _is_vit_like(model: nn.Module) -> bool:
    """True for timm ViT/EVA-style models whose embedding pieces we can run ourselves."""
    return all(hasattr(model, name) for name in ("patch_embed", "_pos_embed", "blocks", "norm")) and hasattr(
        getattr(model, "patch_embed", None), "proj"
    )


class Backbone(nn.Module):
    """A timm model plus its normalisation, token and level interfaces (see module docstring).

    Args:
        model: a timm model built with ``num_classes=0``.
        name: the timm model name (for messages).
        img_size: the resolution the model was built for.
    """

    mean: torch.Tensor
    std: torch.Tensor
    model: Any  # a timm model; typed loosely because timm's attributes are dynamic

    def __init__(self, timm_model: nn.Module, name: str, img_size: int) -> None:
        super().__init__()
        model: Any = timm_model
        self.model = model
        self.name = name
        self.img_size = img_size
        self.is_vit = _is_vit_like(model)
        # CNNs run faster in channels-last memory on most devices; gkd_core.engine.speed decides whether to use it.
        self.prefers_channels_last = not self.is_vit
        cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", {}) or {})
        mean = cfg.get("mean", (0.485, 0.456, 0.406))
        std = cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.embed_dim = int(getattr(model, "num_features", 0) or model.feature_info[-1]["num_chs"])
        self.num_prefix_tokens = int(getattr(model, "num_prefix_tokens", 0)) if self.is_vit else 0
        self.has_cls_token = self.is_vit and getattr(model, "cls_token", None) is not None
        self.num_blocks = len(model.feature_info) if hasattr(model, "feature_info") else len(model.blocks)
        if self.is_vit:
            self.patch_size = int(model.patch_embed.patch_size[0])
            # One learnable mask token shared by all masked positions (stage 1), at the embedding level.
            self.mask_token: nn.Parameter | None = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
            nn.init.trunc_normal_(self.mask_token, std=0.02)
        else:
            self.patch_size = int(model.feature_info[-1]["reduction"])
            self.mask_token = None
        self._grid_cache: dict[tuple[int, int], tuple[int, int]] = {}
        self._native_patch = self.patch_size

    @property
    def native_patch_size(self) -> int:
        """The patch size the model was built with (stage 1a may run at another one)."""
        return self._native_patch

    def set_geometry(self, *, img_size: int, patch_size: int | None = None) -> str:
        """Rebuild a ViT for another input size and/or patch size, in place; returns what changed.

        GKD's proxy step 1a runs the patch-16 student with its patch kernel resized bicubically to 14
        (the official code), and step 1b resizes it back and resamples the position embeddings to the
        1b grid. The kernel uses plain bicubic interpolation as published (timm's own resample is
        pseudo-inverse based); position embeddings are resampled by timm (bicubic). Parameters other
        than the patch kernel and the position embeddings are untouched.

        Raises:
            ConfigError: a CNN (or a ViT timm cannot rebuild) asked for another patch or input size.
        """
        patch = int(patch_size or self.patch_size)
        if not self.is_vit:
            if patch != self.patch_size:
                raise ConfigError(f"{self.name} is not a ViT: its patch size cannot change")
            self.img_size = int(img_size)
            return f"{self.name}: input size {img_size} px"
        if patch == self.patch_size and img_size == self.img_size:
            return f"{self.name}: patch {patch}, {img_size} px (unchanged)"
        model: Any = self.model
        if not callable(getattr(model, "set_input_size", None)):
            raise ConfigError(f"timm model {self.name!r} cannot change its input size or patch size")
        old_weight = model.patch_embed.proj.weight.detach().clone()
        old_patch, old_grid = self.patch_size, tuple(int(g) for g in model.patch_embed.grid_size)
        model.set_input_size(img_size=(img_size, img_size), patch_size=(patch, patch))
        parts = []
        if patch != old_patch:
            resized = F.interpolate(old_weight.float(), size=(patch, patch), mode="bicubic", align_corners=False)
            with torch.no_grad():
                model.patch_embed.proj.weight.copy_(resized.to(old_weight.dtype))
            parts.append(f"patch kernel {old_patch}x{old_patch} -> {patch}x{patch} (bicubic)")
        new_grid = tuple(int(g) for g in model.patch_embed.grid_size)
        if new_grid != old_grid:
            parts.append(f"position embeddings {old_grid[0]}x{old_grid[1]} -> {new_grid[0]}x{new_grid[1]}")
        self.patch_size, self.img_size = patch, int(img_size)
        self._grid_cache.clear()
        return f"{self.name} at {img_size} px: " + ", ".join(parts)

    @property
    def supports_masking(self) -> bool:
        """Whether ``forward_tokens`` accepts a patch mask (ViTs only)."""
        return self.mask_token is not None

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Map float RGB in [0, 1] to this backbone's pretrained mean/std."""
        if x.ndim != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"{self.name} expects images B x {self.mean.shape[1]} x H x W, got {tuple(x.shape)}")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def grid_for(self, height: int, width: int | None = None) -> tuple[int, int]:
        """The (h, w) token grid this backbone produces for an image of the given size."""
        size = (height, width if width is not None else height)
        if self.is_vit:
            h, w = self.model.patch_embed.dynamic_feat_size(size)
            return int(h), int(w)
        if size not in self._grid_cache:
            # CNN strides/padding differ per family: ask the model once with a dummy image.
            # Probe in eval mode: in train mode BatchNorm would fold the dummy image into its running
            # statistics, and fails outright on a 1x1 map of a one-image batch.
            param = next(self.model.parameters())
            probe = torch.zeros(1, 3, *size, device=param.device, dtype=param.dtype)
            was_training = self.model.training
            self.model.eval()
            try:
                with torch.no_grad():
                    fmap = self.model.forward_intermediates(
                        probe, indices=[self.num_blocks - 1], intermediates_only=True
                    )
            finally:
                self.model.train(was_training)
            self._grid_cache[size] = (int(fmap[-1].shape[-2]), int(fmap[-1].shape[-1]))
        return self._grid_cache[size]

    def default_level_indices(self) -> list[int]:
        """Four block indices spread over depth (blocks 4, 6, 8, 12 of 12 for a ViT; last 4 stages of a CNN)."""
        n = self.num_blocks
        if self.is_vit:
            return [max(0, round(n * f) - 1) for f in _LEVEL_FRACTIONS]
        return list(range(max(0, n - 4), n))

    def forward_levels(self, x: torch.Tensor, indices: list[int] | None = None) -> list[torch.Tensor]:
        """Raw B x C x h x w maps of the given blocks, at the backbone's own stride."""
        idx = indices if indices is not None else self.default_level_indices()
        bad = [i for i in idx if not 0 <= i < self.num_blocks]
        if bad:
            raise ConfigError(f"{self.name} has {self.num_blocks} blocks; level indices {bad} are out of range")
        feats = self.model.forward_intermediates(
            self.normalize(x), indices=idx, intermediates_only=True, output_fmt="NCHW"
        )
        # timm returns unique indices in order; map back so duplicates (shallow test models) keep positions.
        unique = sorted(set(idx))
        by_index = dict(zip(unique, feats, strict=True))
        return [by_index[i] for i in idx]

    def forward_tokens(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> TokenOutput:
        """Final-normed CLS and patch tokens.

        Args:
            x: float RGB in [0, 1], B x 3 x H x W.
            mask: optional bool B x N (True = replace that patch embedding by the mask token).

        Raises:
            ConfigError: a mask is given to a backbone that cannot take one (CNN).
        """
        if self.is_vit:
            return self._vit_tokens(self.normalize(x), mask)
        if mask is not None:
            raise ConfigError(
                f"{self.name} is not a ViT: masked views need patch embeddings; "
                "set Stage1Config.mask_probability=0 for CNN students"
            )
        fmap = self.model.forward_intermediates(
            self.normalize(x), indices=[self.num_blocks - 1], intermediates_only=True, output_fmt="NCHW"
        )[-1]
        patches = fmap.flatten(2).transpose(1, 2)
        return TokenOutput(cls=patches.mean(dim=1), patches=patches, grid=(int(fmap.shape[-2]), int(fmap.shape[-1])))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> TokenOutput:
        """Same as :meth:`forward_tokens`."""
        return self.forward_tokens(x, mask)

    def _vit_tokens(self, x: torch.Tensor, mask: torch.Tensor | None) -> TokenOutput:
        m: Any = self.model
        grid = tuple(int(v) for v in m.patch_embed.dynamic_feat_size((x.shape[-2], x.shape[-1])))
        x = m.patch_embed(x)  # B x N x C, or B x H x W x C with dynamic_img_size
        if mask is not None:
            x = self._apply_mask(x, mask)
        embedded = m._pos_embed(x)
        rope = None
        if isinstance(embedded, tuple):  # EVA returns (tokens, rotary embedding)
            embedded, rope = embedded
        x = m.norm_pre(embedded)
        for blk in m.blocks:
            x = blk(x, rope=rope) if rope is not None else blk(x)
        x = m.norm(x)
        if isinstance(m.norm, nn.Identity) and not isinstance(getattr(m, "fc_norm", None), nn.Identity | None):
            # Average-pooled models (e.g. EVA02 ImageNet heads) keep their final LayerNorm in fc_norm,
            # applied after pooling; METHOD.md's teacher targets are tokens after the final LayerNorm.
            x = m.fc_norm(x)
        patches = x[:, self.num_prefix_tokens :]
        cls = x[:, 0] if self.has_cls_token else patches.mean(dim=1)
        return TokenOutput(cls=cls, patches=patches, grid=(grid[0], grid[1]))

    def _apply_mask(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        assert self.mask_token is not None
        batch, channels = x.shape[0], x.shape[-1]
        flat = x.reshape(batch, -1, channels)
        if mask.shape != flat.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(f"mask must be bool {tuple(flat.shape[:2])} (B x N), got {mask.dtype} {tuple(mask.shape)}")
        flat = torch.where(mask.unsqueeze(-1), self.mask_token.to(flat.dtype), flat)
        return flat.reshape(x.shape)


def _check_model_name(name: str) -> None:
    import timm

    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f"; did you mean one of {close}?" if close else "; see timm.list_models() for valid names"
    raise ConfigError(f"unknown timm model {name!r}{hint}")


def _create(cfg: BackboneConfig, pretrained: bool) -> nn.Module:
    import timm

    kwargs: dict[str, Any] = {"pretrained": pretrained, "num_classes": 0, **cfg.overrides}
    try:
        try:
            return timm.create_model(cfg.model, img_size=cfg.img_size, **kwargs)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
            # CNNs take any input size and do not accept img_size.
            return timm.create_model(cfg.model, **kwargs)
    except (TypeError, AssertionError) as exc:  # timm asserts on inconsistent widths/heads
        raise ConfigError(f"invalid overrides {cfg.overrides} for {cfg.model!r}: {exc}") from exc
    except Exception as exc:  # hub failures surface as many exception classes (OSError, HTTP, hub-specific)
        if not pretrained:
            raise
        raise ConfigError(
            f"could not fetch timm pretrained weights for {cfg.model!r} ({type(exc).__name__}: {exc}); "
            "model hubs may be unreachable (HF_HUB_OFFLINE): pass a local .safetensors file as weights"
        ) from exc


def build_backbone(cfg: BackboneConfig) -> Backbone:
    """Build a backbone from a timm model name, with weights from 'none', 'timm' or a local file.

    Raises:
        ConfigError: unknown model name (with close matches), a model without ``forward_intermediates``,
            bad overrides, unreachable hub weights, or a weights file that does not fit.
    """
    _check_model_name(cfg.model)
    model = _create(cfg, pretrained=cfg.weights == "timm")
    if not callable(getattr(model, "forward_intermediates", None)):
        raise ConfigError(
            f"timm model {cfg.model!r} has no forward_intermediates(); choose a model with the feature API "
            "(ViT, DeiT, EVA02, DINOv2, ResNet, ConvNeXt...)"
        )
    if cfg.weights_is_file:
        path = Path(cfg.weights).expanduser()
        apply_state_dict(model, read_state_dict(path), source=str(path), model_name=cfg.model)
        _logger.info("loaded %s weights from %s", cfg.model, path)
    return Backbone(drop_distillation_token(model, cfg), cfg.model, cfg.img_size)


def drop_distillation_token(model: nn.Module, cfg: BackboneConfig) -> nn.Module:
    """A distilled DeiT as the plain ViT it initialises in GKD: no distillation token, no position slot for it.

    The official code starts the DeiT-S student from ``deit_small_distilled_patch16_224`` weights and
    drops the distillation token and its position-embedding slot (the second one), so the student is
    a plain ViT with one CLS token. Any other model is returned as it is.
    """
    import timm

    if getattr(model, "dist_token", None) is None:
        return model
    plain_name = cfg.model.replace("_distilled", "")
    if plain_name == cfg.model or not timm.is_model(plain_name):
        raise ConfigError(f"{cfg.model!r} has a distillation token but no plain counterpart in timm to drop it into")
    plain = _create(replace(cfg, model=plain_name, weights="none"), pretrained=False)
    state = {k: v for k, v in model.state_dict().items() if k != "dist_token" and not k.startswith("head_dist.")}
    pos = state["pos_embed"]
    state["pos_embed"] = torch.cat([pos[:, :1], pos[:, 2:]], dim=1)  # [CLS, dist, patches...] -> [CLS, patches...]
    plain.load_state_dict(state, strict=True)
    setattr(plain, "pretrained_cfg", getattr(model, "pretrained_cfg", {}))  # noqa: B010  (the same normalisation)
    _logger.info("%s: distillation token and its position slot dropped (now %s)", cfg.model, plain_name)
    return plain

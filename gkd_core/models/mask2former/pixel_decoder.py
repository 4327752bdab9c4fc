"""Mask2Former's pixel decoder: deformable-attention encoder over strides 8-32, FPN fusion to stride 4.

Cheng et al., "Masked-attention Mask Transformer for Universal Image Segmentation" (CVPR 2022),
section 3.2.1, as configured in mmseg (``MSDeformAttnPixelDecoder``): the three coarser levels
(strides 32, 16, 8) are projected (1x1 conv + GroupNorm), given sine positions plus a learned
level embedding, and refined by ``encoder_layers`` post-norm layers of multi-scale deformable
self-attention + FFN; the stride-4 level joins through an FPN step (1x1 lateral + upsampled
stride-8 output, then 3x3 conv + GroupNorm + ReLU), and a 1x1 conv gives the mask features.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkd_core.models.mask2former.attention import MSDeformAttn, grid_reference_points, sine_position_encoding

ENCODER_LEVELS = 3


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups as published; fewer for tiny widths, keeping >= 2 channels per group
    (one channel on a 1x1 map, e.g. stride 32 of a 32 px window, has no variance to normalise)."""
    groups = math.gcd(32, channels)
    while groups > 1 and channels // groups < 2:
        groups //= 2
    return nn.GroupNorm(groups, channels)


def _proj(in_dim: int, channels: int, *, bias: bool) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_dim, channels, 1, bias=bias), group_norm(channels))


def _caffe2_xavier(conv: nn.Conv2d) -> None:
    # Caffe2's "XavierFill" (mmcv's caffe2_xavier_init): kaiming-uniform with a=1, zero bias.
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class DeformEncoderLayer(nn.Module):
    """Post-norm encoder layer: x = LN(x + MSDeformAttn(x + pos)); x = LN(x + FFN(x))."""

    def __init__(self, dim: int, num_heads: int, num_points: int, ffn_dim: int) -> None:
        super().__init__()
        self.attn = MSDeformAttn(dim, num_heads, ENCODER_LEVELS, num_points)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, pos: Tensor, reference: Tensor, shapes: Sequence[tuple[int, int]]) -> Tensor:
        x = self.norm1(x + self.attn(x + pos, x, reference, shapes))
        return self.norm2(x + self.ffn(x))


class PixelDecoder(nn.Module):
    """Four levels in (finest first), mask features at stride 4 and the refined strides 32, 16, 8 out.

    Args:
        in_dims: widths of the stride 4, 8, 16, 32 inputs.
        channels: width of every output (the paper: 256).
        encoder_layers: deformable encoder depth (the paper: 6).
        num_heads: deformable attention heads (8).
        num_points: sampling points per head and level (4).
        ffn_dim: encoder FFN width (the paper: 1024 for 256 channels).
    """

    def __init__(
        self,
        in_dims: Sequence[int],
        channels: int,
        *,
        encoder_layers: int,
        num_heads: int,
        num_points: int,
        ffn_dim: int,
    ) -> None:
        super().__init__()
        if len(in_dims) != ENCODER_LEVELS + 1:
            raise ValueError(f"the pixel decoder needs {ENCODER_LEVELS + 1} input widths, got {list(in_dims)}")
        if channels % 2:
            raise ValueError(f"sine positions need an even width, got {channels}")
        self.channels = channels
        # One input projection per level, finest first. Stride 4 is the FPN lateral (no bias, as
        # mmdet's lateral conv before GroupNorm); strides 8-32 feed the encoder (with bias).
        self.input_proj = nn.ModuleList(_proj(d, channels, bias=i > 0) for i, d in enumerate(in_dims))
        # Level embeddings, coarsest (stride 32) first: the encoder's token order.
        self.level_embed = nn.Embedding(ENCODER_LEVELS, channels)
        self.layers = nn.ModuleList(
            DeformEncoderLayer(channels, num_heads, num_points, ffn_dim) for _ in range(encoder_layers)
        )
        self.output_conv = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False), group_norm(channels), nn.ReLU(inplace=True)
        )
        self.mask_proj = nn.Conv2d(channels, channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """mmdet's init: Xavier-uniform encoder projections, caffe2-Xavier FPN convs, N(0, 1) level
        embeddings, Xavier-normal encoder matrices, then the deformable-attention init."""
        for i, proj in enumerate(self.input_proj):
            conv = proj.get_submodule("0")
            assert isinstance(conv, nn.Conv2d)
            if i == 0:
                _caffe2_xavier(conv)
            else:
                nn.init.xavier_uniform_(conv.weight)
                if conv.bias is not None:
                    nn.init.zeros_(conv.bias)
        conv3 = self.output_conv[0]
        assert isinstance(conv3, nn.Conv2d)
        _caffe2_xavier(conv3)
        _caffe2_xavier(self.mask_proj)
        nn.init.normal_(self.level_embed.weight)
        for p in self.layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
        for layer in self.layers:
            assert isinstance(layer, DeformEncoderLayer)
            layer.attn.reset_parameters()

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, list[Tensor]]:
        """Returns mask features ``[B, C, H/4, W/4]`` and the encoder outputs at strides 32, 16, 8."""
        coarse = [features[i] for i in range(ENCODER_LEVELS, 0, -1)]  # strides 32, 16, 8
        projs = [self.input_proj[i] for i in range(ENCODER_LEVELS, 0, -1)]
        shapes = [(int(f.shape[-2]), int(f.shape[-1])) for f in coarse]
        ref = features[0]
        tokens, pos = [], []
        for level, (proj, f, (h, w)) in enumerate(zip(projs, coarse, shapes, strict=True)):
            tokens.append(proj(f).flatten(2).transpose(1, 2))
            p = sine_position_encoding(h, w, self.channels // 2, device=ref.device, dtype=ref.dtype)
            pos.append((p.flatten(2).transpose(1, 2) + self.level_embed.weight[level]).to(ref.dtype))
        x = torch.cat(tokens, dim=1)
        pos_all = torch.cat(pos, dim=1)
        reference = grid_reference_points(shapes, device=ref.device)
        for layer in self.layers:
            x = layer(x, pos_all, reference, shapes)
        memories = []
        start = 0
        for h, w in shapes:
            memories.append(x[:, start : start + h * w].transpose(1, 2).reshape(-1, self.channels, h, w))
            start += h * w
        lateral = self.input_proj[0](features[0])
        fused = lateral + F.interpolate(memories[-1], size=lateral.shape[-2:], mode="bilinear", align_corners=False)
        return self.mask_proj(self.output_conv(fused)), memories

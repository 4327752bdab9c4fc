"""Attention blocks of Mask2Former: sine positions, multi-scale deformable attention, masked attention.

- Sine positional encoding as DETR/Mask2Former (``num_feats`` per axis, normalised to 2*pi).
- Multi-scale deformable attention (Zhu et al., "Deformable DETR", ICLR 2021, eq. 3): each query
  samples ``points`` locations per head and level around its reference point, with learned
  offsets and softmax weights. Pure PyTorch over ``grid_sample`` (bilinear, zero padding,
  ``align_corners=False``, the same sampling as mmcv's reference implementation), so it runs on
  any device and exports to ONNX (GridSample, opset 16+).
- Multi-head attention with an optional boolean "may attend" mask, through
  ``scaled_dot_product_attention`` (fused kernels on GPU; plain ops in an ONNX graph).

Spatial sizes are Python ints on purpose: only the batch axis is dynamic in exports.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sine_position_encoding(
    height: int, width: int, num_feats: int, *, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """DETR's normalised sine encoding of an unpadded ``height x width`` grid: ``[1, 2*num_feats, H, W]``.

    Channels hold (y, x) halves; within each, sin and cos alternate over frequencies
    ``10000^(2*(i//2)/num_feats)``. Positions are (row + 1) / (H + 1e-6) * 2*pi (the cumulative-sum
    form of mmdet's ``SinePositionalEncoding(normalize=True)`` with no padding).
    """
    scale, eps, temperature = 2 * math.pi, 1e-6, 10000.0
    y = torch.arange(1, height + 1, device=device, dtype=torch.float32) / (height + eps) * scale
    x = torch.arange(1, width + 1, device=device, dtype=torch.float32) / (width + eps) * scale
    i = torch.arange(num_feats, device=device, dtype=torch.float32)
    dim_t = temperature ** (2 * torch.div(i, 2, rounding_mode="floor") / num_feats)
    pos_y = y[:, None] / dim_t  # [H, F]
    pos_x = x[:, None] / dim_t  # [W, F]
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
    grid = torch.cat(
        (pos_y[:, None, :].expand(height, width, num_feats), pos_x[None, :, :].expand(height, width, num_feats)),
        dim=2,
    )
    return grid.permute(2, 0, 1).unsqueeze(0).to(dtype)


def grid_reference_points(shapes: Sequence[tuple[int, int]], *, device: torch.device) -> Tensor:
    """Pixel centres of every level, normalised to [0, 1] as (x, y), concatenated: ``[sum(h*w), 2]``."""
    refs = []
    for h, w in shapes:
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        ref_y, ref_x = torch.meshgrid(ys, xs, indexing="ij")
        refs.append(torch.stack((ref_x.reshape(-1), ref_y.reshape(-1)), dim=-1))
    return torch.cat(refs, dim=0)


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention over a flattened multi-level token sequence.

    Args:
        dim: token width (divisible by ``num_heads``).
        num_heads: attention heads.
        num_levels: feature levels the tokens come from.
        num_points: sampled locations per head and level (4 in Deformable DETR / Mask2Former).
    """

    def __init__(self, dim: int, num_heads: int, num_levels: int, num_points: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"deformable attention width {dim} is not divisible by {num_heads} heads")
        self.dim, self.num_heads, self.num_levels, self.num_points = dim, num_heads, num_levels, num_points
        self.sampling_offsets = nn.Linear(dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's init: zero offsets whose bias points each head along its own direction,
        at distances 1..num_points; uniform attention weights; Xavier value/output projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack((thetas.cos(), thetas.sin()), dim=-1)
        grid = grid / grid.abs().max(dim=-1, keepdim=True).values
        grid = grid.view(self.num_heads, 1, 1, 2).repeat(1, self.num_levels, self.num_points, 1)
        grid = grid * torch.arange(1, self.num_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)

    def forward(self, query: Tensor, value: Tensor, reference: Tensor, shapes: Sequence[tuple[int, int]]) -> Tensor:
        """``query`` (positions added) and ``value``: ``[B, N, dim]``; ``reference``: ``[N, 2]`` in [0, 1].

        Every query samples every level around the same normalised reference point.
        """
        batch, n, _ = query.shape
        heads, levels, points = self.num_heads, self.num_levels, self.num_points
        head_dim = self.dim // heads
        v = self.value_proj(value)
        offsets = self.sampling_offsets(query).view(batch, n, heads, levels, points, 2)
        weights = self.attention_weights(query).view(batch, n, heads, levels * points).softmax(-1)
        weights = weights.view(batch, n, heads, levels, points)
        # Offsets are in pixels of each level: divide by (w, h) to stay in normalised units.
        normaliser = torch.tensor([[w, h] for h, w in shapes], device=query.device, dtype=offsets.dtype)
        locations = reference[None, :, None, None, None, :] + offsets / normaliser[None, None, None, :, None, :]
        # Sampling runs in float32 even under bf16 autocast: a bf16 grid coordinate is only good to
        # about 1/8 pixel on the stride-8 level of a 512 px crop.
        grids = (2.0 * locations - 1.0).float()  # grid_sample wants [-1, 1]
        weights = weights.float()
        out = torch.zeros((), device=query.device)
        start = 0
        for level, (h, w) in enumerate(shapes):
            # [B, h*w, dim] -> [B*heads, head_dim, h, w]
            v_l = v[:, start : start + h * w].float().transpose(1, 2).reshape(-1, head_dim, h, w)
            start += h * w
            # [B, N, heads, P, 2] -> [B*heads, N, P, 2]
            g_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
            sampled = F.grid_sample(v_l, g_l, mode="bilinear", padding_mode="zeros", align_corners=False)
            w_l = weights[:, :, :, level].transpose(1, 2).flatten(0, 1).unsqueeze(1)  # [B*heads, 1, N, P]
            out = out + (sampled * w_l).sum(-1)  # [B*heads, head_dim, N]
        out = out.reshape(batch, self.dim, n).transpose(1, 2)
        return self.output_proj(out.to(v.dtype))


class MultiheadAttention(nn.Module):
    """Batch-first multi-head attention; ``allowed`` (bool, broadcastable to ``[B, heads, Q, K]``) masks keys."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, allowed: Tensor | None = None) -> Tensor:
        q, k, v = self._split(self.q_proj(query)), self._split(self.k_proj(key)), self._split(self.v_proj(value))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        return self.out_proj(out.transpose(1, 2).flatten(2))

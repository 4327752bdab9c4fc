"""Mask2Former's masked-attention transformer decoder and its per-layer class and mask predictions.

Cheng et al. (CVPR 2022), section 3.2: learned queries (features and positions) go through
``num_layers`` post-norm layers of masked cross-attention -> self-attention -> FFN, cycling over
the pixel decoder's strides 32, 16, 8 (a round robin, one level per layer). Each query may only
attend inside its own foreground as predicted by the previous layer (sigmoid >= 0.5, resized to
the level; a query that predicts no foreground attends everywhere). Predictions are made before
the first layer and after every layer (all of them get a loss), by a shared LayerNorm, a linear
classifier over ``num_classes + 1`` (last = no object) and a 3-layer MLP whose embedding is dotted
with the stride-4 mask features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gkd_core.models.mask2former.attention import MultiheadAttention, sine_position_encoding
from gkd_core.models.mask2former.pixel_decoder import ENCODER_LEVELS


class MaskedDecoderLayer(nn.Module):
    """q = LN(q + CrossAttn(q + pos, mem + mem_pos, mem; mask)); q = LN(q + SelfAttn); q = LN(q + FFN)."""

    def __init__(self, dim: int, num_heads: int, ffn_dim: int) -> None:
        super().__init__()
        self.cross_attn = MultiheadAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.self_attn = MultiheadAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Linear(ffn_dim, dim))
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, q: Tensor, q_pos: Tensor, memory: Tensor, memory_pos: Tensor, allowed: Tensor) -> Tensor:
        q = self.norm1(q + self.cross_attn(q + q_pos, memory + memory_pos, memory, allowed))
        qp = q + q_pos
        q = self.norm2(q + self.self_attn(qp, qp, q))
        return self.norm3(q + self.ffn(q))


class MaskedTransformerDecoder(nn.Module):
    """Queries -> per-layer class logits ``[B, Q, K+1]`` and mask logits ``[B, Q, H/4, W/4]``.

    Args:
        channels: query and memory width.
        num_classes: K (the classifier has K + 1 outputs).
        num_queries: learned queries (the paper: 100).
        num_layers: decoder layers (the paper: 9).
        num_heads: attention heads (8).
        ffn_dim: FFN width (the paper: 2048 for 256 channels).
    """

    def __init__(
        self, channels: int, num_classes: int, *, num_queries: int, num_layers: int, num_heads: int, ffn_dim: int
    ) -> None:
        super().__init__()
        self.channels = channels
        self.num_layers = num_layers
        self.query_feat = nn.Embedding(num_queries, channels)
        self.query_pos = nn.Embedding(num_queries, channels)
        self.level_embed = nn.Embedding(ENCODER_LEVELS, channels)
        self.layers = nn.ModuleList(MaskedDecoderLayer(channels, num_heads, ffn_dim) for _ in range(num_layers))
        self.post_norm = nn.LayerNorm(channels)
        self.class_embed = nn.Linear(channels, num_classes + 1)
        self.mask_embed = nn.Sequential(
            nn.Linear(channels, channels),
            nn.ReLU(inplace=True),
            nn.Linear(channels, channels),
            nn.ReLU(inplace=True),
            nn.Linear(channels, channels),
        )
        # mmdet: Xavier-normal for the decoder layers' matrices; embeddings and predictors keep defaults.
        for p in self.layers.parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)

    def _predict(
        self, q: Tensor, mask_features: Tensor, attn_size: tuple[int, int] | None, with_class: bool
    ) -> tuple[Tensor | None, Tensor, Tensor | None]:
        q = self.post_norm(q)
        logits = self.class_embed(q) if with_class else None
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(q), mask_features)
        if attn_size is None:
            return logits, masks, None
        small = F.interpolate(masks.detach(), size=attn_size, mode="bilinear", align_corners=False)
        allowed = small.flatten(2).sigmoid() >= 0.5
        # A query that masks every key would give NaN: let it attend everywhere instead.
        allowed = allowed | ~allowed.any(dim=-1, keepdim=True)
        return logits, masks, allowed.unsqueeze(1)  # [B, 1 (heads), Q, h*w]

    def forward(
        self, memories: Sequence[Tensor], mask_features: Tensor, *, all_layers: bool = True
    ) -> tuple[list[Tensor], list[Tensor]]:
        """``memories``: strides 32, 16, 8 ``[B, C, h, w]``. Returns class and mask logits of every
        prediction (before the first layer and after each) or, with ``all_layers=False``, the last."""
        ref = mask_features
        sizes = [(int(m.shape[-2]), int(m.shape[-1])) for m in memories]
        keys, key_pos = [], []
        for level, (mem, (h, w)) in enumerate(zip(memories, sizes, strict=True)):
            keys.append(mem.flatten(2).transpose(1, 2) + self.level_embed.weight[level])
            pos = sine_position_encoding(h, w, self.channels // 2, device=ref.device, dtype=ref.dtype)
            key_pos.append(pos.flatten(2).transpose(1, 2))
        batch = mask_features.shape[0]
        q = self.query_feat.weight.unsqueeze(0).expand(batch, -1, -1)
        q_pos = self.query_pos.weight.unsqueeze(0).expand(batch, -1, -1)
        logits, masks, allowed = self._predict(q, mask_features, sizes[0], with_class=all_layers)
        all_logits, all_masks = [], []
        if all_layers:
            assert logits is not None
            all_logits.append(logits)
            all_masks.append(masks)
        for i, layer in enumerate(self.layers):
            level = i % ENCODER_LEVELS
            assert allowed is not None
            q = layer(q, q_pos, keys[level], key_pos[level], allowed)
            last = i == self.num_layers - 1
            next_size = None if last else sizes[(i + 1) % ENCODER_LEVELS]
            logits, masks, allowed = self._predict(q, mask_features, next_size, with_class=all_layers or last)
            if all_layers or last:
                assert logits is not None
                all_logits.append(logits)
                all_masks.append(masks)
        return all_logits, all_masks

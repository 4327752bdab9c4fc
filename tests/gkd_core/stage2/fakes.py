"""A stand-in backbone with the ``Backbone`` level interface, so heads and stage 2 test without timm."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class TinyLevelBackbone(nn.Module):
    """Patch-8 conv stem plus ``depth`` residual 1x1 blocks; ``forward_levels`` returns one map per index."""

    mean: Tensor

    def __init__(self, embed_dim: int = 16, depth: int = 4, patch_size: int = 8) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.num_blocks = depth
        self.patch_size = patch_size
        self.stem = nn.Conv2d(3, embed_dim, patch_size, stride=patch_size)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(embed_dim, embed_dim, 1), nn.BatchNorm2d(embed_dim), nn.GELU())
            for _ in range(depth)
        )
        self.register_buffer("mean", torch.tensor([0.5, 0.5, 0.5]).view(1, 3, 1, 1))

    def normalize(self, x: Tensor) -> Tensor:
        return x - self.mean

    def forward_levels(self, x: Tensor, indices: Sequence[int]) -> list[Tensor]:
        h = self.stem(self.normalize(x))
        out = {}
        for i, block in enumerate(self.blocks):
            h = h + block(h)
            if i in indices:
                out[i] = h
        return [out[i] for i in indices]

"""What one image costs each model and head: the measured cost table (costs.json) and the formulas around it.

The table is generated on the real gkd_core models by ``python -m bench.cost_table`` (see that module for how
and why the forms below are exact) and read here with the standard library only, so the torch-free API can
estimate a job before it is queued. FLOPs are FlopCounterMode's (2 per multiply-add of matmuls, convolutions
and attention); "saved bytes" are the fp32 activations autograd keeps for the backward pass.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

TABLE_PATH = Path(__file__).with_name("costs.json")
HEAD_BASIS: tuple[str, ...] = tuple(f"{x}*{k}*{c}" for x in ("1", "x") for k in ("1", "K") for c in ("1", "C", "C^2"))
"""The terms a head's coefficients multiply: x (image pixels / HEAD_CELL^2), K (classes), C (head channels)."""
HEAD_CELL = 32


def dims_key(dims: list[int] | tuple[int, ...]) -> str:
    """How the table keys a head's row: the widths of the four levels it reads, e.g. ``"384,384,384,384"``."""
    return ",".join(str(int(d)) for d in dims)


def head_basis(x: float, classes: float, channels: float) -> list[float]:
    """The values of HEAD_BASIS at one point (the generator solves against the same list)."""
    return [xi * ki * ci for xi in (1.0, x) for ki in (1.0, classes) for ci in (1.0, channels, channels**2)]


class CostUnknown(LookupError):
    """The table cannot price this: the message says what is missing and what would fix it."""


@dataclass(frozen=True)
class ModelCost:
    """One backbone's row of the table: forward FLOPs and saved bytes per image as polynomials in grid cells."""

    name: str
    vit: bool
    cell: int
    embed_dim: int
    params: int
    flops: tuple[float, float, float]
    saved: tuple[float, float, float]
    level_dims: tuple[int, ...] = ()
    patch_embed_per_kernel_px: float = 0.0

    def cells(self, side: int, patch: int | None = None) -> float:
        """Grid cells of a ``side`` x ``side`` image (a ViT's tokens without the prefix ones)."""
        return (side / (patch or self.cell)) ** 2

    def forward_flops(self, side: int, patch: int | None = None) -> float:
        """Forward FLOPs per image at ``side`` px; ``patch``: a ViT whose kernel was resized to this patch."""
        x = self.cells(side, patch)
        value = self.flops[0] + self.flops[1] * x + self.flops[2] * x * x
        if patch is not None and patch != self.cell:
            value += self.patch_embed_per_kernel_px * x * (patch**2 - self.cell**2)
        return value

    def saved_bytes(self, side: int, patch: int | None = None) -> float:
        """fp32 activation bytes per image a trainable forward keeps for backward."""
        x = self.cells(side, patch)
        return max(0.0, self.saved[0] + self.saved[1] * x + self.saved[2] * x * x)


@dataclass(frozen=True)
class HeadCost:
    """One stage-2 head on one set of level widths: HEAD_BASIS coefficients for FLOPs, saved bytes, parameters."""

    head: str
    dims: str
    flops: tuple[float, ...]
    saved: tuple[float, ...]
    params_coeffs: tuple[float, ...]

    def _at(self, coeffs: tuple[float, ...], side: int, classes: int, channels: int) -> float:
        x = (side / HEAD_CELL) ** 2
        return sum(c * b for c, b in zip(coeffs, head_basis(x, classes, channels), strict=True))

    def forward_flops(self, side: int, classes: int, channels: int) -> float:
        return self._at(self.flops, side, classes, channels)

    def saved_bytes(self, side: int, classes: int, channels: int) -> float:
        return max(0.0, self._at(self.saved, side, classes, channels))

    def params(self, classes: int, channels: int) -> float:
        return self._at(self.params_coeffs, HEAD_CELL, classes, channels)


def _three(values: list[float]) -> tuple[float, float, float]:
    c0, c1, c2 = (float(v) for v in values)
    return c0, c1, c2


@cache
def load_table(path: Path = TABLE_PATH) -> dict[str, Any]:
    """The committed table (cached: it changes only with a new release)."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def model_cost(name: str, table: dict[str, Any] | None = None) -> ModelCost:
    """The row of zoo model ``name``; CostUnknown for a model the table does not hold."""
    table = table or load_table()
    row = table["models"].get(name)
    if row is None:
        raise CostUnknown(
            f"model {name!r} is not in the cost table (it holds the curated zoo, GET /v1/models); "
            "add it to service/zoo.py and rerun python -m bench.cost_table"
        )
    return ModelCost(
        name=name,
        vit=bool(row["vit"]),
        cell=int(row["cell"]),
        embed_dim=int(row["embed_dim"]),
        params=int(row["params"]),
        flops=_three(row["flops"]),
        saved=_three(row["saved_bytes"]),
        level_dims=tuple(int(d) for d in row["level_dims"]),
        patch_embed_per_kernel_px=float(row.get("patch_embed_flops_per_kernel_px", 0.0)),
    )


def head_cost(head: str, model: str, table: dict[str, Any] | None = None) -> HeadCost:
    """Stage-2 head ``head`` on backbone ``model``; CostUnknown when the table has no such pair."""
    table = table or load_table()
    dims = dims_key(model_cost(model, table).level_dims)
    row = table["heads"].get(head, {}).get(dims)
    if row is None:
        raise CostUnknown(f"head {head!r} on {model!r} is not in the cost table; rerun python -m bench.cost_table")
    return HeadCost(
        head=head,
        dims=dims,
        flops=tuple(row["flops"]),
        saved=tuple(row["saved_bytes"]),
        params_coeffs=tuple(row["params"]),
    )


def _linear_head(n: int, cs: int, ct: int) -> tuple[float, float, int]:
    """LayerNorm + Linear (the CLS head, Proteus' token heads)."""
    return 2.0 * n * cs * ct, 4.0 * n * (cs + ct), cs * ct + ct + 2 * cs


def _qsd_head(n: int, cs: int, ct: int) -> tuple[float, float, int]:
    """Two LayerNorm + Linear projections and an unscaled one-head attention over the teacher's tokens in fp32
    (gkd_core/losses/qsd.py): the N x N logits and their softmax are kept for backward."""
    flops = 2 * (2.0 * n * cs * ct) + 2 * (2.0 * n * n * ct)
    return flops, 4.0 * (2 * n * cs + 3 * n * ct + 2 * n * n), 2 * (cs * ct + ct + 2 * cs)


TOKEN_HEAD_COSTS = {"linear": _linear_head, "qsd": _qsd_head}
"""Per-image (forward FLOPs, saved fp32 bytes, parameters) of each stage-1 token head (gkd_catalog.STAGE1_HEADS)."""


def token_head_cost(kind: str, tokens: int, student_dim: int, teacher_dim: int) -> tuple[float, float, int]:
    """A stage-1 token head per image: (forward FLOPs, saved fp32 bytes, parameters)."""
    formula = TOKEN_HEAD_COSTS.get(kind)
    if formula is None:
        raise CostUnknown(f"stage-1 head {kind!r} has no cost formula; add one to gkd_catalog/costs.py")
    return formula(tokens, student_dim, teacher_dim)


def cls_head_cost(student_dim: int, teacher_dim: int) -> tuple[float, float, int]:
    """The CLS projection head (one token per image)."""
    return _linear_head(1, student_dim, teacher_dim)

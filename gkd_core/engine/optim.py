"""AdamW with cosine (stage 1) or poly (stage 2) decay, and the linear lr scaling rule.

METHOD.md: stage 1 uses AdamW, weight decay 0.05, cosine decay to 1e-5 with no warmup and
lr = 5e-4 x batch / 512; stage 2 uses AdamW, lr 1e-4, wd 0.05, poly decay with power 0.9.

Weight decay is not applied to biases, normalisation weights (any parameter with ndim <= 1) and,
when a module is given, to learned tokens and position embeddings (names containing ``token``
or ``pos_embed``): decaying them toward zero only hurts (the usual ViT recipe).

Schedules are ``LambdaLR`` with small callable classes holding plain numbers, so their state
dict survives ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

ParamsLike = nn.Module | Iterable[nn.Parameter] | Iterable[dict[str, Any]]

_NO_DECAY_NAME_PARTS = ("token", "pos_embed", "relative_position_bias_table")


def scaled_lr(base: float, batch: int, ref: int = 512) -> float:
    """The linear scaling rule: ``base * batch / ref`` (5e-4 at batch 512 gives 1.25e-4 at 128)."""
    if base <= 0 or batch <= 0 or ref <= 0:
        raise ValueError(f"scaled_lr needs positive base, batch and ref, got {base}, {batch}, {ref}")
    return base * batch / ref


def param_groups(params: ParamsLike, weight_decay: float, *, no_decay: Collection[str] = ()) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed and a non-decayed group (see module docstring).

    Frozen parameters (``requires_grad=False``) are left out. Explicit param-group dicts are passed
    through unchanged, with ``weight_decay`` filled in where missing. ``no_decay`` names further
    parameters of a module (as ``named_parameters`` spells them) to keep undecayed, timm's
    ``no_weight_decay()`` convention.
    """
    if isinstance(params, nn.Module):
        named = [(n, p) for n, p in params.named_parameters() if p.requires_grad]
    else:
        items = list(params)
        if items and isinstance(items[0], dict):
            groups = [dict(g) for g in items]  # type: ignore[call-overload]
            for group in groups:
                group.setdefault("weight_decay", weight_decay)
            return groups
        named = [("", p) for p in items if isinstance(p, torch.Tensor) and p.requires_grad]  # type: ignore[misc]
    decayed: list[nn.Parameter] = []
    undecayed: list[nn.Parameter] = []
    for name, param in named:
        if param.ndim <= 1 or name in no_decay or any(part in name for part in _NO_DECAY_NAME_PARTS):
            undecayed.append(param)
        else:
            decayed.append(param)
    if not decayed and not undecayed:
        raise ValueError("no trainable parameters were given to the optimizer")
    groups = []
    if decayed:
        groups.append({"params": decayed, "weight_decay": weight_decay})
    if undecayed:
        groups.append({"params": undecayed, "weight_decay": 0.0})
    return groups


class CosineFactor:
    """lr multiplier: linear warmup, then cosine from 1 down to ``min_ratio`` at ``steps``."""

    def __init__(self, steps: int, warmup: int, min_ratio: float) -> None:
        self.steps = int(steps)
        self.warmup = int(warmup)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class PolyFactor:
    """lr multiplier: linear warmup, then ``(1 - t)^power`` down to ``min_ratio`` at ``steps``."""

    def __init__(self, steps: int, warmup: int, power: float, min_ratio: float) -> None:
        self.steps = int(steps)
        self.warmup = int(warmup)
        self.power = float(power)
        self.min_ratio = float(min_ratio)

    def __call__(self, step: int) -> float:
        if self.warmup and step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * (1.0 - progress) ** self.power


def _check(lr: float, weight_decay: float, steps: int, min_lr: float, warmup: int) -> None:
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0 <= min_lr <= lr:
        raise ValueError(f"min_lr must lie in [0, lr={lr}], got {min_lr}")
    if not 0 <= warmup < steps:
        raise ValueError(f"warmup must lie in [0, steps={steps}), got {warmup}")


def adamw_cosine(
    params: ParamsLike,
    lr: float,
    weight_decay: float = 0.05,
    *,
    steps: int,
    min_lr: float = 1e-5,
    warmup: int = 0,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool | None = None,
) -> tuple[torch.optim.AdamW, LambdaLR]:
    """AdamW plus a per-step cosine schedule from ``lr`` to ``min_lr`` over ``steps`` (stage 1).

    Call ``scheduler.step()`` after every ``optimizer.step()`` (the trainer does). ``fused`` is
    AdamW's (None: torch's own choice; see gkd_core.engine.speed for the measured default).
    """
    min_lr = min(min_lr, lr)
    _check(lr, weight_decay, steps, min_lr, warmup)
    optimizer = torch.optim.AdamW(param_groups(params, weight_decay), lr=lr, betas=betas, fused=fused)
    return optimizer, LambdaLR(optimizer, CosineFactor(steps, warmup, min_lr / lr))


def adamw_poly(
    params: ParamsLike,
    lr: float,
    weight_decay: float = 0.05,
    *,
    steps: int,
    power: float = 0.9,
    min_lr: float = 0.0,
    warmup: int = 0,
    betas: tuple[float, float] = (0.9, 0.999),
    fused: bool | None = None,
) -> tuple[torch.optim.AdamW, LambdaLR]:
    """AdamW plus a per-step poly decay ``(1 - step/steps)^power`` (stage 2, mmseg-style); ``fused`` as
    in :func:`adamw_cosine`."""
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    _check(lr, weight_decay, steps, min_lr, warmup)
    optimizer = torch.optim.AdamW(param_groups(params, weight_decay), lr=lr, betas=betas, fused=fused)
    return optimizer, LambdaLR(optimizer, PolyFactor(steps, warmup, power, min_lr / lr))

"""Small helpers that draw from an optional torch.Generator (None means torch's global RNG).

Every random choice in the transforms goes through these, so a transform is reproducible from a
generator or, inside DataLoader workers, from the per-worker seed torch assigns.
"""

from __future__ import annotations

import torch


def uniform(gen: torch.Generator | None, low: float, high: float) -> float:
    """One float in [low, high)."""
    return low + (high - low) * float(torch.rand((), generator=gen))


def randint(gen: torch.Generator | None, low: int, high: int) -> int:
    """One int in [low, high] (inclusive, unlike torch.randint)."""
    if high <= low:
        return low
    return int(torch.randint(low, high + 1, (), generator=gen))


def chance(gen: torch.Generator | None, p: float) -> bool:
    """True with probability p."""
    return p > 0 and float(torch.rand((), generator=gen)) < p

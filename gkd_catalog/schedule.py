"""How an epoch count becomes optimizer steps: one formula for the planner (service) and the trainer (gkd_core)."""

from __future__ import annotations

import math


def steps_for_epochs(epochs: float, num_images: int, batch_size: int) -> int:
    """Optimizer steps that show a set of ``num_images`` images ``epochs`` times at ``batch_size`` (at least 1).

    A partial last batch counts as a step (``ceil``), as a DataLoader without ``drop_last`` would give.
    """
    return max(1, math.ceil(epochs * num_images / batch_size))

"""DataLoader construction with reproducible shuffling and per-worker seeding.

The loader's generator is seeded from ``seed``: it fixes the shuffle order and the base seed that
torch hands each worker (base + worker id), which seeds the torch RNG the transforms draw from.
``seed_worker`` also seeds numpy and ``random`` from it, for any code that uses those.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: derive numpy/random seeds from the torch seed DataLoader gave this worker."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    persistent_workers: bool | None = None,
) -> DataLoader[Any]:
    """A DataLoader whose order and worker randomness are fixed by ``seed``.

    With ``num_workers=0`` the transforms draw from the main process's global torch RNG, so call
    ``torch.manual_seed`` for bitwise-reproducible augmentation in that case.

    Args:
        dataset: any map-style dataset (e.g. ``open_dataset(...)``).
        batch_size: samples per batch.
        shuffle: reshuffle each epoch (order fixed by ``seed``).
        num_workers: decoding processes; 0 decodes in the caller.
        seed: seeds the shuffle order and the worker base seed.
        drop_last: drop the final incomplete batch (use for training with batch norm).
        pin_memory: pin host memory (CUDA training).
        persistent_workers: keep workers alive between epochs (default: whenever there are workers).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}")
    generator = torch.Generator()
    generator.manual_seed(seed)
    keep = (num_workers > 0) if persistent_workers is None else (persistent_workers and num_workers > 0)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker if num_workers > 0 else None,
        generator=generator,
        persistent_workers=keep,
    )

"""DataLoader construction: worker count, pinning and prefetch defaults, reproducible shuffling.

Defaults that keep a GPU fed (issue 15): as many worker processes as this process may run on
(``os.sched_getaffinity``) divided by the ranks sharing the host, workers kept alive between epochs,
pinned host memory when batches go to a CUDA device, and a prefetch depth that keeps a few batches in
flight without holding gigabytes of pinned batches when there are many workers.

The loader's generator is seeded from ``seed``: it fixes the shuffle order and the base seed that
torch hands each worker (base + worker id), which seeds the torch RNG the transforms draw from.
``seed_worker`` also seeds numpy and ``random`` from it, for any code that uses those.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

# Batches in flight over all workers that the prefetch depth aims for (at least one per worker).
BATCHES_IN_FLIGHT = 4


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask: what a container or taskset grants)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_num_workers(ranks: int = 1) -> int:
    """Loader workers per rank: the cores available to this process shared by ``ranks`` ranks, at least 1.

    One worker even on a single core: decoding then overlaps the main process's device work.
    """
    if ranks < 1:
        raise ValueError(f"ranks must be >= 1, got {ranks}")
    return max(1, available_cores() // ranks)


@dataclass(frozen=True)
class LoaderOptions:
    """The DataLoader keyword arguments that decide throughput (not order or content)."""

    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    prefetch_factor: int | None

    def kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.persistent_workers,
        }
        if self.num_workers > 0:  # torch refuses a prefetch factor without workers
            out["prefetch_factor"] = self.prefetch_factor
        return out


def loader_options(
    num_workers: int | None = None,
    *,
    device: torch.device | str | None = None,
    ranks: int = 1,
    persistent_workers: bool = True,
) -> LoaderOptions:
    """Throughput settings for a loader feeding ``device``.

    Args:
        num_workers: worker processes; None: ``default_num_workers(ranks)``; 0 decodes in the caller.
        device: where batches go; pinned memory (faster, asynchronous copies) only for CUDA.
        ranks: ranks sharing this host's cores (the data-parallel world size on one host).
        persistent_workers: keep workers alive between epochs (only meaningful with workers).

    Raises:
        ValueError: a negative ``num_workers``.
    """
    workers = default_num_workers(ranks) if num_workers is None else num_workers
    if workers < 0:
        raise ValueError(f"num_workers must be >= 0 (or None for one per available core), got {workers}")
    on_cuda = device is not None and torch.device(device).type == "cuda"
    return LoaderOptions(
        num_workers=workers,
        pin_memory=on_cuda,
        persistent_workers=persistent_workers and workers > 0,
        prefetch_factor=max(1, math.ceil(BATCHES_IN_FLIGHT / workers)) if workers > 0 else None,
    )


def seed_worker(worker_id: int) -> None:
    """worker_init_fn: derive numpy/random seeds from the torch seed DataLoader gave this worker."""
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(
    dataset: Dataset[Any],
    batch_size: int,
    shuffle: bool = False,
    num_workers: int | None = None,
    seed: int = 0,
    drop_last: bool = False,
    device: torch.device | str | None = None,
    persistent_workers: bool = True,
    ranks: int = 1,
) -> DataLoader[Any]:
    """A DataLoader whose order and worker randomness are fixed by ``seed``.

    With ``num_workers=0`` the transforms draw from the main process's global torch RNG, so call
    ``torch.manual_seed`` for bitwise-reproducible augmentation in that case.

    Args:
        dataset: any map-style dataset (e.g. ``open_dataset(...)``).
        batch_size: samples per batch.
        shuffle: reshuffle each epoch (order fixed by ``seed``).
        num_workers: decoding processes; None (default): one per available core (see ``loader_options``).
        seed: seeds the shuffle order and the worker base seed.
        drop_last: drop the final incomplete batch (use for training with batch norm).
        device: where the batches will go; CUDA turns on pinned memory.
        persistent_workers: keep workers alive between epochs.
        ranks: ranks sharing this host's cores (divides the default worker count).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    options = loader_options(num_workers, device=device, ranks=ranks, persistent_workers=persistent_workers)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        worker_init_fn=seed_worker if options.num_workers > 0 else None,
        generator=generator,
        **options.kwargs(),
    )

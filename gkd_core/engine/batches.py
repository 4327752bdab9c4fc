"""Step-indexed batch sources: the data order after a resume is the data order of an unbroken run.

The trainer asks a batch source for an iterator *starting at a given step*. ``StepBatches`` makes
that exact: epoch ``e`` visits the dataset in the permutation drawn from ``(seed, e)``, step ``s``
takes batch ``s mod steps_per_epoch`` of epoch ``s // steps_per_epoch``, and every sample is
fetched with all global RNGs seeded from ``(seed, epoch, position)``. Random augmentation thus
depends only on where the sample sits in the schedule, not on which process fetched it, how many
loader workers there are, or whether the run was interrupted. The global RNG stream (dropout,
masking) is left untouched by data loading.

Under data parallelism ``batch_size`` stays the global batch: rank ``r`` of ``N`` takes positions
``[r * batch_size / N, (r + 1) * batch_size / N)`` of every global batch, so the ranks together see
exactly the single-process batch (same samples, same seeds) and a resume at another world size
continues from the same data position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gkd_core.engine import distributed
from gkd_core.engine.seeding import isolated_rng


@runtime_checkable
class BatchSource(Protocol):
    """Anything the trainer can draw batches from: ``source(start_step)`` yields the batch of
    ``start_step``, then of ``start_step + 1``, and so on (deterministically)."""

    def __call__(self, start_step: int) -> Iterator[Any]: ...


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one sample slot, mixed with NumPy's SeedSequence (no correlated streams)."""
    state = np.random.SeedSequence([seed, epoch, position]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class _SeededItems(Dataset[Any]):
    """Fetch ``dataset[index]`` with the global RNGs seeded for that sample slot."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with isolated_rng(seed):
            return self.dataset[index]


class _StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """Infinite batch sampler starting at ``start_step``; yields (index, sample seed) pairs."""

    def __init__(self, source: StepBatches, start_step: int) -> None:
        self.source = source
        self.start_step = start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        src = self.source
        step = self.start_step
        while True:
            epoch, within = divmod(step, src.steps_per_epoch)
            order = src.epoch_order(epoch)
            lo = within * src.batch_size + src.rank * src.local_batch_size
            positions = range(lo, min(lo + src.local_batch_size, len(order)))
            yield [(int(order[p]), sample_seed(src.seed, epoch, p)) for p in positions]
            step += 1


class StepBatches:
    """A resumable batch source over a map-style dataset (see module docstring).

    Args:
        dataset: indexable with ``len``; items are collated by ``collate_fn``.
        batch_size: samples per step over all ranks (the global batch).
        seed: fixes the per-epoch order and every sample's augmentation randomness.
        shuffle: draw a fresh permutation each epoch (else dataset order).
        drop_last: skip an incomplete final batch per epoch (keeps batch shapes fixed).
        num_workers: DataLoader worker processes; results do not depend on it.
        collate_fn: defaults to torch's default collate.
        pin_memory: pin host memory for faster GPU copies.
        rank, world_size: this process's shard (default: the live process group, else 0 of 1).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        num_workers: int = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        pin_memory: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        size = len(dataset)
        world = distributed.world_size() if world_size is None else world_size
        rank = distributed.rank() if rank is None else rank
        if world < 1 or not 0 <= rank < world:
            raise ValueError(f"rank {rank} of world size {world} is not a valid shard")
        if batch_size % world:
            raise ValueError(
                f"the global batch of {batch_size} does not split evenly over {world} ranks; "
                f"use a multiple of {world} (each rank takes batch_size / {world})"
            )
        if world > 1 and not drop_last:
            raise ValueError("sharding over ranks needs drop_last=True (every rank batch must be full)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if size == 0:
            raise ValueError("the dataset is empty; a training stage needs at least one sample")
        if drop_last and size < batch_size:
            raise ValueError(
                f"the dataset has {size} samples, fewer than one batch of {batch_size}; "
                "lower batch_size or pass drop_last=False"
            )
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_workers = num_workers
        self.collate_fn = collate_fn
        self.pin_memory = pin_memory
        self.rank = rank
        self.world_size = world
        self.local_batch_size = batch_size // world
        self.steps_per_epoch = size // batch_size if drop_last else -(-size // batch_size)

    def epoch_order(self, epoch: int) -> Sequence[int]:
        """Dataset indices in the order epoch ``epoch`` visits them."""
        size = len(self.dataset)
        if not self.shuffle:
            return range(size)
        return np.random.default_rng([self.seed, epoch]).permutation(size).tolist()

    def epoch_of(self, step: int) -> int:
        """The epoch whose data the 0-based ``step`` consumes."""
        return step // self.steps_per_epoch

    def __call__(self, start_step: int) -> Iterator[Any]:
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        # An explicit generator keeps DataLoader from drawing its base seed from the global RNG.
        generator = torch.Generator().manual_seed(self.seed)
        loader = DataLoader(
            _SeededItems(self.dataset),
            batch_sampler=_StepBatchSampler(self, start_step),
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=self.pin_memory,
            generator=generator,
        )
        return iter(loader)

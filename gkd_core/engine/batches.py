"""Step-indexed batch sources: the data order after a resume is the data order of an unbroken run.

The trainer asks a batch source for an iterator *starting at a given step*. ``StepBatches`` makes
that exact: epoch ``e`` visits the dataset in the permutation drawn from ``(seed, e)``, step ``s``
takes batch ``s mod steps_per_epoch`` of epoch ``s // steps_per_epoch``, and every sample is
fetched with all global RNGs seeded from ``(seed, epoch, position)``. Random augmentation thus
depends only on where the sample sits in the schedule, not on which process fetched it, how many
loader workers there are, or whether the run was interrupted. The global RNG stream (dropout,
masking) is left untouched by data loading.

The sampler draws each epoch's permutation once, when the schedule enters that epoch (not once per
step: at ImageNet size a permutation costs about 0.1 s), so any step is reachable directly from
``(seed, step)`` without replaying earlier steps.

Under data parallelism ``batch_size`` stays the global batch: rank ``r`` of ``N`` takes positions
``[r * batch_size / N, (r + 1) * batch_size / N)`` of every global batch, so the ranks together see
exactly the single-process batch (same samples, same seeds) and a resume at another world size
continues from the same data position.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from gkd_core.data.loader import loader_options
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


def to_device(batch: Any, device: torch.device) -> Any:
    """Move every tensor inside nested dicts/lists/tuples to ``device``; leave other values alone."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {key: to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, list):
        return [to_device(value, device) for value in batch]
    if isinstance(batch, tuple):
        return (
            type(batch)(*(to_device(v, device) for v in batch))
            if hasattr(batch, "_fields")
            else tuple(to_device(v, device) for v in batch)
        )
    return batch


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
    """Infinite batch sampler starting at ``start_step``; yields (index, sample seed) pairs.

    One permutation per epoch: it is drawn when the schedule enters the epoch and kept until it leaves.
    """

    def __init__(self, source: StepBatches, start_step: int) -> None:
        self.source = source
        self.start_step = start_step

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        src = self.source
        step = self.start_step
        epoch_now: int = -1
        order: Sequence[int] = range(0)
        while True:
            epoch, within = divmod(step, src.steps_per_epoch)
            if epoch != epoch_now:
                epoch_now, order = epoch, src.epoch_order(epoch)
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
        num_workers: DataLoader worker processes (None: one per core available to this process, shared
            by the ranks; see ``gkd_core.data.loader.default_num_workers``); results do not depend on it.
        collate_fn: defaults to torch's default collate.
        device: where the batches go: CUDA pins host memory (asynchronous copies). With
            ``batch_transform`` the batches are also moved there before it runs.
        batch_transform: applied to every collated batch on ``device`` (augmentation that is exact on
            the device, e.g. ``gkd_core.data.photometric.apply_deferred``); it must be deterministic
            given the batch, since it runs outside the per-sample seeding.
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
        num_workers: int | None = 0,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        device: torch.device | str | None = None,
        batch_transform: Callable[[Any], Any] | None = None,
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
        self.loader_options = loader_options(num_workers, device=device, ranks=world)
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.num_workers = self.loader_options.num_workers
        self.collate_fn = collate_fn
        self.device = None if device is None else torch.device(device)
        self.batch_transform = batch_transform
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
        # The sampler is infinite, so the workers live as long as this iterator: persistent by construction.
        options = self.loader_options.kwargs() | {"persistent_workers": False}
        loader = DataLoader(
            _SeededItems(self.dataset),
            batch_sampler=_StepBatchSampler(self, start_step),
            collate_fn=self.collate_fn,
            generator=generator,
            **options,
        )
        if self.batch_transform is None:
            return iter(loader)
        return self._on_device(iter(loader), self.batch_transform)

    def _on_device(self, batches: Iterator[Any], transform: Callable[[Any], Any]) -> Iterator[Any]:
        for batch in batches:
            yield transform(batch if self.device is None else to_device(batch, self.device))

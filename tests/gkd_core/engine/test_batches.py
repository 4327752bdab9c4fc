"""Step-indexed batches: resume order, worker-count independence, epochs; and seeding helpers."""

from __future__ import annotations

import random
from itertools import islice

import numpy as np
import pytest
import torch

from gkd_core.engine import StepBatches, seed_everything
from gkd_core.engine.seeding import capture_rng_state, isolated_rng, restore_rng_state

from ._toy import ToyDataset


def _take(source: StepBatches, start: int, count: int) -> list[dict[str, torch.Tensor]]:
    return list(islice(source(start), count))


def _same(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> bool:
    return len(a) == len(b) and all(torch.equal(x[k], y[k]) for x, y in zip(a, b, strict=True) for k in x)


def test_starting_mid_run_gives_the_same_batches() -> None:
    source = StepBatches(ToyDataset(), batch_size=4, seed=1)
    full = _take(source, 0, 7)  # crosses two epoch boundaries (3 steps per epoch)
    assert _same(_take(source, 4, 3), full[4:])
    assert not torch.equal(full[0]["image"], full[3]["image"])  # epochs reshuffle and re-augment


def test_data_does_not_touch_or_depend_on_global_rng() -> None:
    source = StepBatches(ToyDataset(), batch_size=4, seed=1)
    seed_everything(0)
    first = _take(source, 0, 2)
    after = torch.rand(1)
    seed_everything(0)
    torch.rand(5)  # a different global state must not change the data
    assert _same(_take(source, 0, 2), first)
    seed_everything(0)
    _take(source, 0, 2)
    assert torch.equal(torch.rand(1), after)  # and loading the data did not advance the global RNG


def test_worker_count_does_not_change_batches() -> None:
    inline = StepBatches(ToyDataset(), batch_size=4, seed=2)
    workers = StepBatches(ToyDataset(), batch_size=4, seed=2, num_workers=2)
    assert _same(_take(workers, 2, 3), _take(inline, 2, 3))


def test_epoch_orders_are_permutations_and_differ() -> None:
    source = StepBatches(ToyDataset(), batch_size=4, seed=3)
    orders = [list(source.epoch_order(e)) for e in range(3)]
    assert all(sorted(o) == list(range(12)) for o in orders)
    assert orders[0] != orders[1]
    assert list(StepBatches(ToyDataset(), batch_size=4, shuffle=False).epoch_order(5)) == list(range(12))
    assert source.steps_per_epoch == 3 and source.epoch_of(3) == 1


def test_incomplete_last_batch_kept_without_drop_last() -> None:
    source = StepBatches(ToyDataset(10), batch_size=4, drop_last=False)
    assert [len(b["target"]) for b in _take(source, 0, 4)] == [4, 4, 2, 4]


def test_bad_sources() -> None:
    with pytest.raises(ValueError, match="fewer than one batch"):
        StepBatches(ToyDataset(3), batch_size=4)
    with pytest.raises(ValueError, match="empty"):
        StepBatches([], batch_size=1)
    with pytest.raises(ValueError, match="batch_size"):
        StepBatches(ToyDataset(), batch_size=0)


def test_rng_capture_restore_and_isolation() -> None:
    seed_everything(4)
    state = capture_rng_state()
    first = (torch.rand(2), np.random.rand(2), random.random())
    restore_rng_state(state)
    assert torch.equal(torch.rand(2), first[0]) and np.array_equal(np.random.rand(2), first[1])
    assert random.random() == first[2]
    restore_rng_state(state)
    with isolated_rng(123):
        inside = torch.rand(1)
    with isolated_rng(123):
        assert torch.equal(torch.rand(1), inside)
    assert torch.equal(torch.rand(2), first[0])  # the outer stream was not disturbed
    with pytest.raises(ValueError, match="seed"):
        seed_everything(-1)


class _Ids:
    """Items are their own index: a batch lists the image ids it holds."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> int:
        return index


class _CountingBatches(StepBatches):
    drawn: list[int]

    def epoch_order(self, epoch: int):
        self.drawn.append(epoch)
        return super().epoch_order(epoch)


def test_one_permutation_per_epoch_not_per_step() -> None:
    source = _CountingBatches(_Ids(40), 4, seed=1, collate_fn=list)
    source.drawn = []
    _take(source, 5, 20)  # steps 5-24: the end of epoch 0, epochs 1 and 2 (10 steps each)
    assert source.drawn == [0, 1, 2]


@pytest.mark.parametrize("world", [1, 2, 4])
def test_resume_mid_epoch_reads_the_ids_of_the_unbroken_run(world: int) -> None:
    def ids(start: int, count: int) -> list[list[int]]:
        shards = [StepBatches(_Ids(30), 8, seed=9, collate_fn=list, rank=r, world_size=world) for r in range(world)]
        per_rank = [list(islice(s(start), count)) for s in shards]
        return [[i for rank in per_rank for i in rank[step]] for step in range(count)]

    unbroken = ids(0, 12)  # 3 steps an epoch (30 images, batch 8, drop_last): 4 epochs
    epochs = [[i for batch in unbroken[e * 3 : e * 3 + 3] for i in batch] for e in range(4)]
    assert all(len(set(ids_)) == 24 for ids_ in epochs)  # no image twice within an epoch
    for k in (1, 4, 8):  # mid-epoch 0, 1 and 2
        assert ids(k, 12 - k) == unbroken[k:], k
    assert epochs[0] != sorted(epochs[0]) and epochs[0] != epochs[1]  # shuffled, and reshuffled each epoch

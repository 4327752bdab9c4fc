"""make_loader: seeded order, batches of the item format, and worker seeding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from gkd_core.data import SegTrainTransform, default_num_workers, loader_options, make_loader, open_dataset
from gkd_core.data.loader import available_cores
from tests.gkd_core.data import fixtures as fx


def _names(loader) -> list[str]:
    return [n for batch in loader for n in batch["name"]]


def test_loader_order_is_fixed_by_seed(tmp_path: Path) -> None:
    ds = open_dataset(fx.folder(tmp_path, n=6), "folder", "train")
    a = _names(make_loader(ds, batch_size=2, shuffle=True, seed=3))
    b = _names(make_loader(ds, batch_size=2, shuffle=True, seed=3))
    c = _names(make_loader(ds, batch_size=2, shuffle=True, seed=4))
    assert a == b and sorted(a) == sorted(ds.names) and a != c
    batch = next(iter(make_loader(ds, batch_size=4, drop_last=True)))
    assert batch["image"].shape == (4, 3, fx.H, fx.W) and batch["mask"].dtype == torch.int64


def test_workers_give_reproducible_augmentation(tmp_path: Path) -> None:
    ds = open_dataset(fx.folder(tmp_path, n=4), "folder", "train", transform=SegTrainTransform(crop=4))

    def run(seed: int) -> torch.Tensor:
        return torch.cat([b["image"] for b in make_loader(ds, batch_size=2, num_workers=2, seed=seed)])

    first, again, other = run(0), run(0), run(1)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_default_workers_follow_this_process_cores_and_ranks() -> None:
    cores = len(os.sched_getaffinity(0))
    assert available_cores() == cores
    assert default_num_workers() == cores and default_num_workers(2) == max(1, cores // 2)
    assert default_num_workers(10 * cores) == 1  # never 0: decoding still overlaps the device work
    with pytest.raises(ValueError, match="ranks"):
        default_num_workers(0)


def test_loader_options_pin_only_for_cuda_and_keep_workers(tmp_path: Path) -> None:
    cpu = loader_options(3, device="cpu")
    assert (cpu.pin_memory, cpu.persistent_workers, cpu.prefetch_factor) == (False, True, 2)
    cuda = loader_options(8, device=torch.device("cuda", 1))  # the code path only: nothing touches a GPU
    assert cuda.pin_memory and cuda.prefetch_factor == 1  # 8 workers already keep 8 batches in flight
    inline = loader_options(0, device="cuda")
    assert not inline.persistent_workers and "prefetch_factor" not in inline.kwargs()
    with pytest.raises(ValueError, match="num_workers"):
        loader_options(-1)
    ds = open_dataset(fx.folder(tmp_path, n=2), "folder", "train")
    loader = make_loader(ds, batch_size=1, device="cuda")
    assert loader.pin_memory and loader.persistent_workers and loader.num_workers == default_num_workers()
    assert not make_loader(ds, batch_size=1, device="cpu", num_workers=0).pin_memory

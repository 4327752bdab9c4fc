"""Data-parallel training over ranks with ``torch.distributed`` (DDP), as torchrun starts it.

The rules every stage follows when a process group is up (and that reduce to the plain loop when
it is not):

- A stage's ``batch_size`` is the **global** batch. Each of the N ranks takes ``batch_size / N``
  consecutive positions of every global batch (``StepBatches`` shards by rank), so the union of
  the rank batches is exactly the single-process batch, with the same per-sample augmentation
  seeds. A batch that does not divide by N is refused; there is no silent rounding.
- Gradients are averaged by ``DistributedDataParallel``; for losses that are means over equal-sized
  rank batches this is the gradient of the global batch, so N ranks and one process take the same
  steps. Logged scalars are averaged over ranks before they are reported.
- Batch-dependent randomness (stage 1's masked view) is drawn per rank, on the rank's own batch:
  the first half of *each rank's* batch is masked, as in the official multi-GPU code.
- CNN students get ``nn.SyncBatchNorm`` on CUDA (PyTorch implements it for GPUs only; CPU ranks
  keep per-rank batch statistics, with buffers broadcast from rank 0 by DDP).
- Every rank polls for a stop and the answers are combined with one all-reduce per step, so all
  ranks stop (and checkpoint) at the same step.
- Rank 0 alone writes files (checkpoints, stage state, exports) and reports to callbacks.

Nothing here reads the environment: the launcher (the worker's rank entry point, or a script)
passes the local rank and device kind to :func:`setup`; ``torch.distributed`` itself reads
torchrun's ``MASTER_ADDR``/``RANK``/``WORLD_SIZE`` through its ``env://`` rendezvous.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, NoReturn

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

_logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 1800.0


def active() -> bool:
    """True when a process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on the rank that writes files and reports (rank 0, or the only process)."""
    return rank() == 0


def backend_for(device_kind: str) -> str:
    """NCCL between GPUs, gloo between CPU processes."""
    return "nccl" if device_kind == "cuda" else "gloo"


def setup(*, device_kind: str, local_rank: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> torch.device:
    """Join the process group torchrun describes and return this rank's device.

    Args:
        device_kind: "cuda" (one GPU per local rank, NCCL) or "cpu" (gloo).
        local_rank: the rank on this host (torchrun's ``LOCAL_RANK``); picks the GPU.
        timeout_s: how long a collective may wait for a slow or lost rank before failing.
    """
    if device_kind not in ("cuda", "cpu"):
        raise ValueError(f"device_kind must be 'cuda' or 'cpu', got {device_kind!r}")
    device = torch.device("cpu")
    if device_kind == "cuda":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend_for(device_kind), timeout=timedelta(seconds=timeout_s))
    _logger.info("rank %d of %d on %s (%s)", rank(), world_size(), device, dist.get_backend())
    return device


def teardown() -> None:
    """Leave the process group (a no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int) -> NoReturn:
    """End a rank process without interpreter finalization, once its results are written and the group is left.

    Gloo's C++ threads can still hold objects with Python references when the interpreter tears down, and
    destroying them then aborts the process (``terminate called without an active exception``, SIGABRT; see
    pytorch/pytorch#179291). Seen here about once in five two-rank CPU runs, after every result was saved:
    torchrun then reports the rank as failed. Finalization does nothing a finished rank needs, so skip it.
    """
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _collective_device() -> torch.device:
    # NCCL only reduces CUDA tensors; gloo reduces CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def any_rank(flag: bool) -> bool:
    """True on every rank when ``flag`` is True on at least one (one all-reduce)."""
    if not active():
        return flag
    value = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def mean_over_ranks(values: Mapping[str, float]) -> dict[str, float]:
    """The average of each named scalar over all ranks (names must match on every rank)."""
    if not active() or not values:
        return dict(values)
    names = sorted(values)
    stacked = torch.tensor([values[n] for n in names], dtype=torch.float64, device=_collective_device())
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    return dict(zip(names, (stacked / world_size()).cpu().tolist(), strict=True))


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj`` in rank order, on every rank (``[obj]`` without a process group)."""
    if not active():
        return [obj]
    found: list[Any] = [None] * world_size()
    dist.all_gather_object(found, obj)
    return found


def rank_seed(seed: int, rank_index: int, step: int = 0) -> int:
    """The seed of rank ``rank_index``'s random stream: ``seed`` itself on rank 0, a mixed one elsewhere.

    Rank 0 keeps the single-process stream so that a one-process run is unchanged; other ranks get
    independent streams (SeedSequence mixing), re-derived from ``step`` when a resume cannot
    restore their saved state (the world size changed).
    """
    if rank_index == 0 and step == 0:
        return seed
    state = np.random.SeedSequence([seed, rank_index, step]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def _has_trainable_batchnorm(module: nn.Module) -> bool:
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and any(p.requires_grad for p in m.parameters())
        for m in module.modules()
    )


def wrap(task: nn.Module, device: torch.device) -> nn.Module:
    """``task`` wrapped in DistributedDataParallel when several ranks train, else ``task`` itself.

    Trainable BatchNorm layers become SyncBatchNorm on CUDA first (the same parameter and buffer
    objects, so optimizers and checkpoints are unaffected). ``find_unused_parameters`` is on because
    a task may leave a parameter out of a step (stage 1's mask token when nothing is masked).
    """
    if not active():
        return task
    if device.type == "cuda" and _has_trainable_batchnorm(task):
        nn.SyncBatchNorm.convert_sync_batchnorm(task)
        _logger.info("BatchNorm layers synchronised across %d ranks", world_size())
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(task, device_ids=device_ids, find_unused_parameters=True)

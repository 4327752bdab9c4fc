"""How many ranks one job may run on this worker, and the advertisement of that number per queue.

A GPU worker gives a job up to every CUDA device it sees (``GKD_WORKER_GPUS`` narrows it; so does
``CUDA_VISIBLE_DEVICES``); a worker without GPUs runs gloo ranks on its CPU instead, up to
``GKD_WORKER_CPU_RANKS`` (default: its core count), so multi-rank jobs run in CI and on a laptop.
The count is found without creating a CUDA context in the Celery processes: a CPU-only torch build
has no devices, and otherwise a short child process asks NVML. The main worker process advertises
the count for every queue it consumes (``worker_slots`` rows, service/capacity.py), which the API
reads to refuse jobs no live worker can hold.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from service import capacity
from service.settings import Settings
from worker.context import WorkerContext

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slots:
    """Ranks one job may run here, and on what."""

    count: int
    kind: str  # "cuda" (one GPU per rank, nccl) or "cpu" (gloo processes)

    def describe(self) -> str:
        return f"{self.count} GPU(s)" if self.kind == "cuda" else f"{self.count} CPU rank(s) (gloo, no GPU)"


@functools.cache
def cuda_device_count() -> int:
    """CUDA devices visible to this process, counted in a child process (no CUDA context here)."""
    import torch

    if torch.version.cuda is None:  # a CPU build of torch: nothing to ask
        return 0
    code = "import torch; print(torch.cuda.device_count())"
    env = {**os.environ, "PYTORCH_NVML_BASED_CUDA_CHECK": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        return int(done.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        _logger.warning("could not count CUDA devices (%s); running jobs on the CPU", exc)
        return 0


def local_slots(settings: Settings) -> Slots:
    """What this worker offers one job (see the module docstring)."""
    gpus = settings.worker_gpus if settings.worker_gpus is not None else cuda_device_count()
    if gpus > 0:
        return Slots(gpus, "cuda")
    return Slots(settings.worker_cpu_ranks or os.cpu_count() or 1, "cpu")


FORGET_AFTER_S = 7 * 24 * 3600  # rows of workers gone this long are deleted by any live worker


class Advertiser:
    """Refreshes this worker's ``worker_slots`` rows every ``capacity_interval_s`` in a daemon thread."""

    def __init__(self, context: WorkerContext, worker: str, queues: Sequence[str]) -> None:
        self.context = context
        self.worker = worker
        self.queues = list(queues)
        self.slots = local_slots(context.settings)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gkd-capacity", daemon=True)

    def start(self) -> Advertiser:
        self.advertise()  # before the first job can arrive: the API sees this worker at once
        with self.context.session() as session:
            capacity.prune(session=session, older_than_s=FORGET_AFTER_S)
        self._thread.start()
        _logger.info("worker %s offers %s per job on %s", self.worker, self.slots.describe(), self.queues)
        return self

    def advertise(self) -> None:
        with self.context.session() as session:
            capacity.advertise(session=session, worker=self.worker, queues=self.queues, slots=self.slots.count,
                               device=self.slots.kind)  # fmt: skip

    def stop(self) -> None:
        """Stop refreshing and withdraw the rows (the API stops counting this worker at once)."""
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            with self.context.session() as session:
                capacity.withdraw(session=session, worker=self.worker)
        except Exception:  # the rows go stale by themselves
            _logger.exception("could not withdraw the capacity of %s", self.worker)

    def _run(self) -> None:
        while not self._stop.wait(self.context.settings.capacity_interval_s):
            try:
                self.advertise()
            except Exception:  # a database blip: the next tick retries
                _logger.exception("could not advertise the capacity of %s", self.worker)

"""How many ranks one job may run on this worker, and the advertisement of that number per queue.

A GPU worker gives a job up to every CUDA device it sees (``GKD_WORKER_GPUS`` narrows it; so does
``CUDA_VISIBLE_DEVICES``); a worker without GPUs runs gloo ranks on its CPU instead, up to
``GKD_WORKER_CPU_RANKS`` (default: its core count), so multi-rank jobs run in CI and on a laptop.
The count is found without creating a CUDA context in the Celery processes: a CPU-only torch build
has no devices, and otherwise a short child process asks NVML.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
from dataclasses import dataclass

from service.settings import Settings

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

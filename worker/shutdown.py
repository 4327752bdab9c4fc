"""Graceful handoff: a worker that is asked to stop checkpoints its running job and requeues it.

Celery's warm shutdown waits for the running task, which for a training job can be hours. Instead,
the main worker process leaves a marker file named after its pid; a pool process polls for its
parent's marker through ``should_stop``, so the training loop saves a checkpoint and the pipeline
puts the job back in the queue for another worker. A file, not a signal: a signal that lands in an
idle pool process while it holds billiard's queue lock kills it and deadlocks the pool's shutdown.
Pool processes also get a parent-death signal, so no training process outlives its worker.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import tempfile
import threading
from pathlib import Path

_logger = logging.getLogger(__name__)
_requested = threading.Event()
_PR_SET_PDEATHSIG = 1


def marker_path(worker_pid: int) -> Path:
    """The file whose presence asks the pool processes of worker ``worker_pid`` to hand back their jobs."""
    return Path(tempfile.gettempdir()) / f"gkd-handoff-{worker_pid}"


def request() -> None:
    """Ask this process's running job to checkpoint and go back to the queue."""
    _requested.set()


def requested() -> bool:
    """True once this process, or the worker process that forked it, asked for a handoff."""
    return _requested.is_set() or marker_path(os.getppid()).exists()


def reset() -> None:
    """Forget a request (tests run several jobs in one process)."""
    _requested.clear()


def notify_children() -> Path:
    """In the main worker process: ask every pool process to hand its job back."""
    marker = marker_path(os.getpid())
    marker.touch()
    _logger.warning("shutdown: running jobs will checkpoint and go back to the queue (%s)", marker)
    return marker


def clear_marker() -> None:
    """At worker start: a marker left by an earlier process with the same pid must not stop new jobs."""
    marker_path(os.getpid()).unlink(missing_ok=True)


def die_with_parent(sig: int) -> None:
    """Linux: have the kernel send ``sig`` to this process when its parent dies (else a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        _logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())

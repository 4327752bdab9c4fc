"""Graceful handoff: a worker that is asked to stop checkpoints its running job and requeues it.

Celery's warm shutdown waits for the running task, which for a training job can be hours. Instead,
the main worker process forwards the shutdown to its pool children as SIGUSR2; a child's handler
only sets a flag, which the training loop polls as ``should_stop``: it saves a checkpoint, and the
pipeline puts the job back in the queue so another worker resumes it. Children also get a parent-
death signal, so no training process outlives its worker.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

_logger = logging.getLogger(__name__)
_requested = threading.Event()
_PR_SET_PDEATHSIG = 1
HANDOFF_SIGNAL = signal.SIGUSR2  # SIGUSR1 is billiard's soft time limit in pool children


def request(_signum: int | None = None, _frame: FrameType | None = None) -> None:
    """Ask the running job to checkpoint and hand itself back to the queue (signal-handler safe)."""
    _requested.set()


def requested() -> bool:
    """True once this process was asked to hand its job back."""
    return _requested.is_set()


def reset() -> None:
    """Forget a request (tests run several jobs in one process)."""
    _requested.clear()


def install_handler() -> None:
    """In a pool child: turn the handoff signal into a request."""
    signal.signal(HANDOFF_SIGNAL, request)


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Linux: have the kernel send ``sig`` to this process when its parent dies (else a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        _logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())


def child_pids(parent: int) -> list[int]:
    """Direct children of ``parent``, read from /proc (empty where /proc is absent)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The command name may hold spaces or parentheses: fields after the last ')' are fixed.
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def notify_children() -> list[int]:
    """In the main worker process: ask every pool child to hand its job back."""
    notified = []
    for pid in child_pids(os.getpid()):
        try:
            os.kill(pid, HANDOFF_SIGNAL)
            notified.append(pid)
        except ProcessLookupError:
            continue
    if notified:
        _logger.warning("shutdown: asked pool processes %s to checkpoint and requeue their jobs", notified)
    return notified

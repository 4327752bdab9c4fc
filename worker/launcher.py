"""Start a job's training as its own process group and supervise it from the Celery task.

Every job trains outside the Celery processes, which therefore never create a CUDA context: one
rank is ``python -m worker.rank_main``; N ranks are torchrun (``--standalone --nproc-per-node N``,
``worker/torchrun_agent.py``). The group runs in its own session, so the task can signal all of it
at once, and every process in it dies with its parent. While it runs, the task (this module):

- replays rank 0's reports into the job's callbacks (database rows, checkpoint pushes) from a
  reader thread, so a slow upload never delays a stop;
- writes the stop file when ``stop_reason()`` gives a reason (cancel, handoff, the runtime limit,
  a failed upload); every rank sees it at its next step and they stop together after a
  checkpoint; a group that does not stop within ``grace_s`` is terminated;
- reads each rank's outcome when the group exits: a rank's bad-input error fails the job with its
  message; a rank that died without a word (killed, out of memory, a lost peer) is ``RankLost``,
  which requeues the job so the next attempt resumes from the last stored checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gkd_core.engine.callbacks import Callbacks
from worker.reports import ControlDir, ReportReader
from worker.retry import RankLost
from worker.sched_group import set_group_nice

_logger = logging.getLogger(__name__)

POLL_S = 0.1
TERM_GRACE_S = 10.0
RANKS_LOG = "ranks.log"


class RankFailed(Exception):
    """A rank stopped on an exception it reported; ``str()`` reads as that exception did."""

    def __init__(self, rank: int, type_name: str, message: str, *, user: bool) -> None:
        super().__init__(message)
        self.rank = rank
        self.type_name = type_name
        self.user = user


@dataclass
class LaunchResult:
    """How the process group ended (errors are raised instead)."""

    stopped: bool
    stop_reason: str | None = None
    forced: bool = False
    summary: dict[str, Any] = field(default_factory=dict)
    exports: dict[str, Path] = field(default_factory=dict)


def command(control: ControlDir, nproc: int) -> list[str]:
    """The command that starts ``nproc`` ranks for the control folder (from this process)."""
    if nproc == 1:  # no group to form: one process, without torchrun's agent in between
        return [sys.executable, "-m", "worker.rank_main", str(control.path), "--parent-pid", str(os.getpid())]
    return [sys.executable, "-m", "worker.torchrun_agent", str(control.path), "--parent-pid", str(os.getpid()),
            "--nproc", str(nproc)]  # fmt: skip


def rank_environment(nproc: int, device_kind: str) -> dict[str, str]:
    """This process's environment, with CPU threads split between CPU ranks (N gloo ranks share the cores)."""
    env = dict(os.environ)
    if device_kind == "cpu" and nproc > 1:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
    return env


def describe_launch(nproc: int, device_kind: str) -> str:
    """One line for the job's events: how many ranks, started how, talking over what."""
    if nproc == 1:
        return f"1 rank on {'a GPU' if device_kind == 'cuda' else 'the CPU'} (one training process)"
    backend = "nccl, one GPU per rank" if device_kind == "cuda" else "gloo, CPU processes"
    return f"{nproc} ranks (torchrun --standalone --nproc-per-node {nproc}; {backend})"


class _Reader(threading.Thread):
    """Replays reports until told the group has exited, then drains what is left."""

    def __init__(self, reader: ReportReader) -> None:
        super().__init__(name="gkd-rank-reports", daemon=True)
        self.reader = reader
        self.finished = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.finished.is_set():
                if not self.reader.drain():
                    self.finished.wait(POLL_S)
            self.reader.drain()
        except BaseException as exc:  # surfaced by run_ranks once the group has stopped
            self.error = exc


def run_ranks(
    control: ControlDir,
    *,
    nproc: int,
    device_kind: str,
    callbacks: Callbacks,
    stop_reason: Callable[[], str | None],
    grace_s: float,
    nice: int = 0,
) -> LaunchResult:
    """Run the training described by ``control``'s launch file on ``nproc`` ranks until it ends.

    ``nice`` is added to the training processes' niceness (``GKD_RANK_NICE``): set on the first process
    right after it starts, while it is still single-threaded, so every thread and rank it starts inherits it.

    Raises:
        RankFailed: a rank reported an exception (``user`` says whether it is bad input).
        RankLost: a rank died without reporting (transient: the job is requeued).
        Exception: a report could not be replayed (e.g. a checkpoint upload failed).
    """
    log_path = control.path / RANKS_LOG
    reader = _Reader(ReportReader(control, callbacks))
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command(control, nproc), env=rank_environment(nproc, device_kind), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    if nice:
        lower_priority(process.pid, nice)
    _logger.info("training for %s started as process group %d", control.path.name, process.pid)
    reader.start()
    reason: str | None = None
    asked_at = 0.0
    forced = False
    try:
        while process.poll() is None:
            if reason is None:
                reason = "a report could not be stored" if reader.error is not None else stop_reason()
                if reason is not None:
                    control.request_stop(reason)
                    asked_at = time.monotonic()
                    _logger.info("asked the ranks of %s to stop: %s", control.path.name, reason)
            elif time.monotonic() - asked_at > grace_s and not forced:
                _logger.warning("ranks of %s still running %.0f s after the stop request; terminating",
                                control.path.name, grace_s)  # fmt: skip
                _terminate(process)
                forced = True
            time.sleep(POLL_S)
    except BaseException:
        _terminate(process)
        raise
    finally:
        reader.finished.set()
        reader.join()
    if reader.error is not None:
        raise reader.error
    return _outcome(control, process.returncode, nproc, reason, forced, log_path)


def lower_priority(pid: int, nice: int) -> None:
    """Add ``nice`` to process ``pid``'s niceness (a process that already ended is left alone).

    ``pid`` leads its own session (``start_new_session``), and with the kernel's autogroup scheduling
    (``/proc/sys/kernel/sched_autogroup_enabled``, on in most distributions) every session is a group
    that gets an equal share of the CPU whatever its processes' niceness. So the session's group is
    given the same niceness (``/proc/<pid>/autogroup``); without that, the training still took half
    the cores from an API on the same machine.
    """
    with contextlib.suppress(ProcessLookupError):
        target = min(19, os.getpriority(os.PRIO_PROCESS, pid) + nice)
        os.setpriority(os.PRIO_PROCESS, pid, target)
        set_group_nice(pid, target)  # nothing to do without a group (no kernel support, or a cgroup owns it)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole group (torchrun forwards it to the ranks), SIGKILL what is left after a while."""
    for sig, wait_s in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, TERM_GRACE_S)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _outcome(
    control: ControlDir, code: int, nproc: int, reason: str | None, forced: bool, log_path: Path
) -> LaunchResult:
    outcomes = control.outcomes()
    errors = sorted((rank, o) for rank, o in outcomes.items() if o.get("status") == "error")
    for rank, found in sorted(errors, key=lambda item: not item[1].get("user")):
        if found.get("user") or len(outcomes) == nproc:
            # Bad input, or a failure every rank lived to report: not worth another attempt as such.
            raise RankFailed(rank, found.get("type", "Error"), found.get("message", ""), user=bool(found.get("user")))
    if len(outcomes) < nproc:  # (every rank reporting is what counts, not a crash at interpreter exit)
        if forced:
            return LaunchResult(stopped=True, stop_reason=reason, forced=True)
        reported = "; ".join(f"rank {r} reported {o.get('type')}: {o.get('message')}" for r, o in errors)
        raise RankLost(
            f"the training process group ended with exit code {code} and {nproc - len(outcomes)} of {nproc} "
            f"rank(s) silent (killed, out of memory, or a lost peer){'; ' + reported if reported else ''}; "
            f"last lines of {log_path.name}:\n{_tail(log_path)}"
        )
    if code != 0:
        _logger.warning("every rank of %s reported, but the group exited with %d", control.path.name, code)
    main = outcomes[0]
    if main.get("status") == "stopped":
        return LaunchResult(stopped=True, stop_reason=reason)
    return LaunchResult(
        stopped=False,
        summary=dict(main.get("summary") or {}),
        exports={name: Path(path) for name, path in (main.get("exports") or {}).items()},
    )

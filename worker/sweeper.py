"""Recover jobs and evaluations whose worker vanished, and re-send those whose queue message was lost.

The database, not the broker, decides what runs: a running row (job or evaluation, worker/attempts.py's
``KINDS``) whose heartbeat is older than ``heartbeat_stale_s`` is requeued (or failed with reason infra
after max_attempts), and a row queued for longer than ``queued_resend_s`` is sent again (a duplicate
message is harmless: the claim is a compare-and-set). Each goes back to its own queue. Every worker runs
a sweeper thread; the compare-and-set transitions make concurrent sweepers safe. The same thread applies
checkpoint retention and removes local work folders no attempt will use again (worker/scratch_janitor.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from service import retention
from service.errors import InvalidTransition
from service.models import JobStatus
from worker.attempts import KINDS, Kind
from worker.context import WorkerContext
from worker.scratch_janitor import clean_scratch

_logger = logging.getLogger(__name__)
SCRATCH_CLEAN_INTERVAL_S = 300.0  # leftover work folders are looked for this often (GKD_SCRATCH_IDLE_S: how old)


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did (ids of jobs and evaluations together)."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)


def sweep_once(
    context: WorkerContext, *, requeue_after_s: float | None = None, kinds: tuple[Kind, ...] = KINDS
) -> SweepResult:
    """Requeue stale running rows and re-send long-queued ones; returns the ids touched.

    ``requeue_after_s`` defaults to the ``queued_resend_s`` setting.
    """
    result = SweepResult()
    resend_after = context.settings.queued_resend_s if requeue_after_s is None else requeue_after_s
    for kind in kinds:
        _sweep_kind(context, kind, resend_after, result)
    if result.requeued or result.failed or result.cancelled or result.resent:
        _logger.warning(
            "sweeper: requeued %s, failed %s, cancelled %s, re-sent %s",
            result.requeued, result.failed, result.cancelled, result.resent,
        )  # fmt: skip
    return result


def _sweep_kind(context: WorkerContext, kind: Kind, resend_after_s: float, result: SweepResult) -> None:
    settings = context.settings
    lifecycle = kind.lifecycle
    with context.session() as session:
        stale_rows = lifecycle.find_stale(session=session, older_than=settings.heartbeat_stale_s)
        queues = {row.id: row.queue for row in stale_rows}
    requeued: list[str] = []
    for row_id in list(queues):
        try:
            with context.session() as session:
                status = lifecycle.requeue_stale(session=session, row_id=row_id)
        except InvalidTransition:  # another sweeper or the worker itself got there first
            continue
        if status is JobStatus.QUEUED:
            requeued.append(row_id)
        else:
            {JobStatus.FAILED: result.failed, JobStatus.CANCELLED: result.cancelled}[status].append(row_id)
    with context.session() as session:  # committed before anything is sent: a lost commit sends nothing
        waiting_rows = lifecycle.find_queued(session=session, older_than=resend_after_s)
        queues.update({row.id: row.queue for row in waiting_rows})
        resent = [
            row.id
            for row in waiting_rows
            if row.id not in requeued
            and lifecycle.take_resend(session=session, row_id=row.id, older_than=resend_after_s)
        ]
    for row_id in requeued + resent:
        kind.send(row_id, queue=queues[row_id], settings=settings)  # back to the queue it was submitted to
    result.requeued.extend(requeued)
    result.resent.extend(resent)


class Sweeper:
    """Runs ``sweep_once`` every ``interval_s`` seconds in a daemon thread."""

    def __init__(self, context: WorkerContext, interval_s: float, *, requeue_after_s: float | None = None) -> None:
        self.context = context
        self.interval_s = interval_s
        self.requeue_after_s = requeue_after_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gkd-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        next_clean = 0.0
        while not self._stop.wait(self.interval_s):
            try:
                sweep_once(self.context, requeue_after_s=self.requeue_after_s)
                retention.apply_retention(self.context)
                if time.monotonic() >= next_clean:  # a folder listing: every few minutes is enough
                    clean_scratch(self.context, idle_s=self.context.settings.scratch_idle_s)
                    next_clean = time.monotonic() + SCRATCH_CLEAN_INTERVAL_S
            except Exception:  # a database blip must not kill the sweeper; the next sweep retries
                _logger.exception("sweeper: sweep failed")

"""Recover jobs and evaluations whose worker vanished, and re-send those whose queue message was lost.

The database, not the broker, decides what runs: a running row (job or evaluation, worker/attempts.py's
``KINDS``) whose heartbeat is older than ``heartbeat_stale_s`` is requeued (or failed with reason infra
after max_attempts), and a row queued for longer than ``queued_resend_s`` is sent again (a duplicate
message is harmless: the claim is a compare-and-set). Each goes back to its own queue. Every worker runs
a sweeper thread; the compare-and-set transitions make concurrent sweepers safe.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from service import retention
from service.errors import InvalidTransition
from service.models import JobStatus
from worker.attempts import KINDS, Kind
from worker.context import WorkerContext

_logger = logging.getLogger(__name__)


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
        while not self._stop.wait(self.interval_s):
            try:
                sweep_once(self.context, requeue_after_s=self.requeue_after_s)
                retention.apply_retention(self.context)
            except Exception:  # a database blip must not kill the sweeper; the next sweep retries
                _logger.exception("sweeper: sweep failed")

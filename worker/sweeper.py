"""Recover jobs whose worker vanished, and re-send jobs whose queue message was lost.

The database, not the broker, decides what runs: a running job whose heartbeat is older than
``heartbeat_stale_s`` is requeued (or failed with reason infra after max_attempts), and a job
queued for longer than ``requeue_after_s`` is sent again (a duplicate message is harmless: the
claim is a compare-and-set). Every worker runs a sweeper thread; the compare-and-set transitions
make concurrent sweepers safe.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from service import jobs, retention
from service.errors import InvalidTransition
from service.models import JobStatus
from service.queue import enqueue_job
from worker.context import WorkerContext

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepResult:
    """What one sweep did."""

    requeued: list[str]
    failed: list[str]
    cancelled: list[str]
    resent: list[str]


def sweep_once(context: WorkerContext, *, requeue_after_s: float = 120.0) -> SweepResult:
    """Requeue stale running jobs and re-send long-queued ones; returns the job ids touched."""
    settings = context.settings
    requeued: list[str] = []
    failed: list[str] = []
    cancelled: list[str] = []
    with context.session() as session:
        stale_jobs = jobs.find_stale_jobs(session=session, older_than=settings.heartbeat_stale_s)
        queues = {job.id: job.queue for job in stale_jobs}
        stale = list(queues)
    for job_id in stale:
        try:
            with context.session() as session:
                status = jobs.requeue_stale(session=session, job_id=job_id)
        except InvalidTransition:  # another sweeper or the worker itself got there first
            continue
        {JobStatus.QUEUED: requeued, JobStatus.FAILED: failed, JobStatus.CANCELLED: cancelled}[status].append(job_id)
    with context.session() as session:
        waiting_jobs = jobs.find_queued_jobs(session=session, older_than=requeue_after_s)
        queues.update({job.id: job.queue for job in waiting_jobs})
        waiting = [job.id for job in waiting_jobs]
    resent = [job_id for job_id in waiting if job_id not in requeued]
    for job_id in requeued + resent:
        enqueue_job(job_id, queue=queues[job_id], settings=settings)  # back to the queue it was submitted to
    if requeued or failed or cancelled or resent:
        _logger.warning(
            "sweeper: requeued %s, failed %s, cancelled %s, re-sent %s", requeued, failed, cancelled, resent
        )
    return SweepResult(requeued, failed, cancelled, resent)


class Sweeper:
    """Runs ``sweep_once`` every ``interval_s`` seconds in a daemon thread."""

    def __init__(self, context: WorkerContext, interval_s: float, *, requeue_after_s: float = 120.0) -> None:
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

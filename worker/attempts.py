"""One attempt at a job or an evaluation: claim it, keep its heartbeat, and decide what a failure does.

Jobs (worker/pipeline.py) and evaluations (worker/evaluation.py) share this: both rows go through
service/lifecycle.py, so the worker side is written once too, and the sweeper walks ``KINDS``.
A failure ends the attempt in one of four ways:

- the row was cancelled meanwhile: it ends cancelled;
- an outage outlasted the window (``OutageTooLong``): it fails with reason infra and the real cause;
- a lost rank, or a transient fault that reached the task anyway: the attempt is spent and the row
  goes back to its own queue with backoff, until ``max_attempts`` (then it fails with reason infra);
- anything else fails it at once: reason user for bad input, infra otherwise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from service import evaluations, jobs
from service.lifecycle import Lifecycle
from service.models import JobStatus
from service.queue import enqueue_evaluation, enqueue_job
from service.settings import Settings
from worker.context import WorkerContext
from worker.launcher import RankFailed
from worker.retry import BackoffPolicy, OutageTooLong, is_transient, is_user_error

_logger = logging.getLogger(__name__)


class Send(Protocol):
    """Sends a row's task to its queue (``countdown``: seconds to wait first)."""

    def __call__(
        self, row_id: str, /, *, queue: str = ..., settings: Settings | None = ..., countdown: float | None = ...
    ) -> None: ...


@dataclass(frozen=True)
class Kind:
    """A kind of work the worker runs: the lifecycle of its table and how to send it to a queue."""

    name: str
    lifecycle: Lifecycle[Any]
    send: Send


JOB = Kind("job", jobs.LIFECYCLE, enqueue_job)
EVALUATION = Kind("evaluation", evaluations.LIFECYCLE, enqueue_evaluation)
KINDS: tuple[Kind, ...] = (JOB, EVALUATION)


def claim(context: WorkerContext, kind: Kind, row_id: str, worker: str) -> Any | None:
    """The claimed row (detached from its session), or None for a message that is not ours to run."""
    with context.session() as session:
        row = kind.lifecycle.claim(session=session, row_id=row_id, worker=worker)
        if row is not None:
            session.expunge(row)
        return row


def beat(context: WorkerContext, kind: Kind, row_id: str, attempt: int) -> bool:
    """One heartbeat; True when the attempt should stop (cancel requested, or the row moved on)."""
    with context.session() as session:
        return kind.lifecycle.heartbeat(session=session, row_id=row_id, attempt=attempt)


def describe(exc: BaseException) -> str:
    """``Type: message``; a rank's error reads as it was raised there."""
    return f"{exc.type_name if isinstance(exc, RankFailed) else type(exc).__name__}: {exc}"


def handle_failure(context: WorkerContext, kind: Kind, row_id: str, attempt: int, exc: BaseException) -> None:
    """End attempt ``attempt`` of the row after ``exc`` (see the module docstring); never raises."""
    detail = describe(exc)
    if not isinstance(exc, Exception):  # KeyboardInterrupt / SystemExit: the sweeper will requeue it
        _logger.warning("%s %s: worker interrupted (%s)", kind.name, row_id, detail)
        return
    lifecycle = kind.lifecycle
    delay: float | None = None
    try:
        with context.session() as session:
            row = lifecycle.get(session, row_id)
            queue, max_attempts = row.queue, row.max_attempts
            active = (JobStatus.RUNNING.value, JobStatus.CANCELLING.value)
            if row.status not in active or row.attempt != attempt:
                return  # another attempt owns the row now, or it already ended
            if row.status == JobStatus.CANCELLING.value and (is_transient(exc) or isinstance(exc, OutageTooLong)):
                lifecycle.finish(session=session, row_id=row_id, status=JobStatus.CANCELLED, detail="cancelled")
            elif isinstance(exc, OutageTooLong):
                lifecycle.finish(session=session, row_id=row_id, status=JobStatus.FAILED, reason="infra", detail=detail)
            elif is_transient(exc):
                lifecycle.event(session, row, type="info", message=f"infrastructure error: {detail}")
                if attempt >= max_attempts:
                    # Keep the real cause: "worker lost" (requeue_stale's wording) would hide it.
                    lifecycle.finish(
                        session=session, row_id=row_id, status=JobStatus.FAILED, reason="infra",
                        detail=f"{detail} (attempt {attempt} of {max_attempts}; no attempts left)",
                    )  # fmt: skip
                else:
                    delay = BackoffPolicy.from_settings(context.settings).delay(attempt)
                    lifecycle.requeue(
                        session=session, row_id=row_id,
                        message=f"requeued after attempt {attempt}/{max_attempts}; retry in {delay:.0f} s",
                    )  # fmt: skip
            else:
                user = is_user_error(exc) or (isinstance(exc, RankFailed) and exc.user)
                _logger.info("%s %s failed: %s", kind.name, row_id, detail)
                lifecycle.finish(
                    session=session, row_id=row_id, status=JobStatus.FAILED, reason="user" if user else "infra",
                    detail=detail,
                )  # fmt: skip
    except Exception:  # the database itself is down: the sweeper requeues the row once it is back
        _logger.exception("%s %s: could not record the failure %s", kind.name, row_id, detail)
        return
    if delay is not None:
        _logger.warning("%s %s: transient error (%s); retrying in %.1f s", kind.name, row_id, detail, delay)
        kind.send(row_id, queue=queue, settings=context.settings, countdown=delay)

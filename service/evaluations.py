"""Evaluations of a finished job's student on more domains: create and cancel (API), claim and finish (worker).

An evaluation runs through the same lifecycle as a job (service/lifecycle.py): a compare-and-set claim
that counts attempts, a heartbeat, the sweeper's requeue of a lost worker's evaluation and re-send of
one whose message was lost, and cancel. It has no event table: its transitions are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.errors import InvalidTransition, NotFound
from service.lifecycle import Lifecycle
from service.models import Evaluation, EvaluationStatus, FailureReason, Job, JobStatus, utcnow
from service.schemas import DataRef

_logger = logging.getLogger(__name__)


class EvaluationNotFound(NotFound):
    """No evaluation with this id for this team."""


def _log_event(
    session: Session, evaluation: Evaluation, type: str, message: str, from_status: str | None, to_status: str | None
) -> None:
    _logger.info("evaluation %s (attempt %d) %s: %s", evaluation.id, evaluation.attempt, type, message)


def _failure_columns(reason: str, detail: str | None) -> dict[str, Any]:
    return {"error_reason": reason, "error": detail}


# The shared lifecycle bound to the evaluations table.
LIFECYCLE: Lifecycle[Evaluation] = Lifecycle(
    model=Evaluation,
    noun="evaluation",
    not_found=EvaluationNotFound,
    failure_columns=_failure_columns,
    on_event=_log_event,
)


def create_evaluation(*, session: Session, job: Job, targets: Sequence[DataRef], max_attempts: int = 3) -> Evaluation:
    """Queue an evaluation of ``job``'s student on the job's queue; the job must have succeeded (else 409)."""
    if job.status != JobStatus.SUCCEEDED.value:
        raise InvalidTransition(
            f"job {job.id} is {job.status}; only a succeeded job has a student to evaluate",
            current=job.status,
            requested="evaluate",
        )
    now = utcnow()
    evaluation = Evaluation(
        job_id=job.id,
        team_id=job.team_id,
        status=EvaluationStatus.QUEUED.value,
        targets=[t.model_dump(exclude_none=True) for t in targets],
        queue=job.queue,
        max_attempts=max_attempts,
        created_at=now,
        updated_at=now,
    )
    session.add(evaluation)
    session.flush()
    return evaluation


def get_evaluation(*, session: Session, evaluation_id: str, team_id: str | None = None) -> Evaluation:
    """The evaluation, scoped to ``team_id`` when given."""
    from service.jobs import is_id

    if not is_id(evaluation_id):
        raise EvaluationNotFound(f"no evaluation {evaluation_id[:64]!r}")
    query = select(Evaluation).where(Evaluation.id == evaluation_id)
    if team_id is not None:  # a deleted job's evaluations go with it, as its other reads do
        query = query.join(Job, Job.id == Evaluation.job_id).where(
            Evaluation.team_id == team_id, Job.deleted_at.is_(None)
        )
    evaluation = session.scalar(query)
    if evaluation is None:
        raise EvaluationNotFound(f"no evaluation {evaluation_id!r}")
    return evaluation


def list_evaluations(*, session: Session, job_id: str) -> list[Evaluation]:
    """A job's evaluations, newest first."""
    query = select(Evaluation).where(Evaluation.job_id == job_id)
    return list(session.scalars(query.order_by(Evaluation.created_at.desc(), Evaluation.id.desc())))


def list_team_evaluations(
    *, session: Session, team_id: str, statuses: list[str] | None = None, limit: int = 100
) -> list[Evaluation]:
    """The team's evaluations of jobs it has not deleted, newest first; ``statuses`` filters."""
    query = (
        select(Evaluation)
        .join(Job, Job.id == Evaluation.job_id)
        .where(Evaluation.team_id == team_id, Job.deleted_at.is_(None))
    )
    if statuses:
        query = query.where(Evaluation.status.in_(statuses))
    return list(session.scalars(query.order_by(Evaluation.created_at.desc(), Evaluation.id.desc()).limit(limit)))


def request_cancel(*, session: Session, evaluation_id: str, team_id: str | None = None) -> Evaluation:
    """Cancel: a queued evaluation is cancelled at once, a running one stops at its next target (409 if done)."""
    evaluation = get_evaluation(session=session, evaluation_id=evaluation_id, team_id=team_id)
    return LIFECYCLE.request_cancel(session=session, row=evaluation)


def claim_evaluation(*, session: Session, evaluation_id: str, worker: str | None = None) -> Evaluation | None:
    """queued -> running with attempt + 1; None when it is not queued (redelivered message, cancelled, done)."""
    get_evaluation(session=session, evaluation_id=evaluation_id)
    return LIFECYCLE.claim(session=session, row_id=evaluation_id, worker=worker)


def heartbeat(*, session: Session, evaluation_id: str, attempt: int | None = None) -> bool:
    """Record that the worker is alive. Returns True when it should stop (cancel, or superseded)."""
    return LIFECYCLE.heartbeat(session=session, row_id=evaluation_id, attempt=attempt)


def finish_evaluation(
    *,
    session: Session,
    evaluation_id: str,
    status: EvaluationStatus | str,
    results: dict[str, Any] | None = None,
    error: str | None = None,
    reason: FailureReason | str | None = None,
) -> Evaluation:
    """running -> succeeded (with per-domain results) | failed (error, reason user|infra) | cancelled."""
    target = JobStatus(EvaluationStatus(status).value)
    if target is JobStatus.FAILED and reason is None:
        reason = FailureReason.USER
    values: dict[str, Any] = {} if results is None else {"results": results}
    return LIFECYCLE.finish(
        session=session, row_id=evaluation_id, status=target, reason=reason, detail=error, values=values
    )


def find_stale_evaluations(
    *, session: Session, older_than: timedelta | float, now: datetime | None = None
) -> list[Evaluation]:
    """Running/cancelling evaluations whose heartbeat is older than ``older_than``."""
    return LIFECYCLE.find_stale(session=session, older_than=older_than, now=now)


def requeue_stale(*, session: Session, evaluation_id: str) -> JobStatus:
    """Recover an evaluation whose worker was lost (see Lifecycle.requeue_stale)."""
    return LIFECYCLE.requeue_stale(session=session, row_id=evaluation_id)

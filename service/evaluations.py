"""Evaluations of a finished job's student on more domains: create (API), claim and finish (worker)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service.errors import InvalidTransition, NotFound
from service.models import Evaluation, EvaluationStatus, Job, JobStatus, utcnow
from service.schemas import DataRef


def create_evaluation(*, session: Session, job: Job, targets: Sequence[DataRef]) -> Evaluation:
    """Queue an evaluation of ``job``'s student; the job must have succeeded (else 409)."""
    if job.status != JobStatus.SUCCEEDED.value:
        raise InvalidTransition(
            f"job {job.id} is {job.status}; only a succeeded job has a student to evaluate",
            current=job.status,
            requested="evaluate",
        )
    evaluation = Evaluation(
        job_id=job.id,
        team_id=job.team_id,
        status=EvaluationStatus.QUEUED.value,
        targets=[t.model_dump(exclude_none=True) for t in targets],
        created_at=utcnow(),
    )
    session.add(evaluation)
    session.flush()
    return evaluation


def get_evaluation(*, session: Session, evaluation_id: str, team_id: str | None = None) -> Evaluation:
    """The evaluation, scoped to ``team_id`` when given."""
    from service.jobs import is_id

    if not is_id(evaluation_id):
        raise NotFound(f"no evaluation {evaluation_id[:64]!r}")
    query = select(Evaluation).where(Evaluation.id == evaluation_id)
    if team_id is not None:
        query = query.where(Evaluation.team_id == team_id)
    evaluation = session.scalar(query)
    if evaluation is None:
        raise NotFound(f"no evaluation {evaluation_id!r}")
    return evaluation


def list_evaluations(*, session: Session, job_id: str) -> list[Evaluation]:
    """A job's evaluations, newest first."""
    query = select(Evaluation).where(Evaluation.job_id == job_id)
    return list(session.scalars(query.order_by(Evaluation.created_at.desc(), Evaluation.id.desc())))


def claim_evaluation(*, session: Session, evaluation_id: str) -> Evaluation | None:
    """queued -> running (compare-and-set); None when it is not queued (redelivered message)."""
    get_evaluation(session=session, evaluation_id=evaluation_id)
    result = session.execute(
        update(Evaluation)
        .where(Evaluation.id == evaluation_id, Evaluation.status == EvaluationStatus.QUEUED.value)
        .values(status=EvaluationStatus.RUNNING.value, started_at=utcnow(), attempt=Evaluation.attempt + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return session.scalar(
        select(Evaluation).where(Evaluation.id == evaluation_id).execution_options(populate_existing=True)
    )


def finish_evaluation(
    *,
    session: Session,
    evaluation_id: str,
    status: EvaluationStatus | str,
    results: dict[str, Any] | None = None,
    error: str | None = None,
) -> Evaluation:
    """running -> succeeded (with per-domain results) | failed (with an error message)."""
    target = EvaluationStatus(status)
    if target not in (EvaluationStatus.SUCCEEDED, EvaluationStatus.FAILED):
        raise InvalidTransition(f"finish_evaluation needs succeeded or failed, got {target.value}")
    result = session.execute(
        update(Evaluation)
        .where(Evaluation.id == evaluation_id, Evaluation.status == EvaluationStatus.RUNNING.value)
        .values(status=target.value, results=results, error=error, finished_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        current = get_evaluation(session=session, evaluation_id=evaluation_id).status
        raise InvalidTransition(
            f"evaluation {evaluation_id} is {current}, cannot move to {target.value}",
            current=current,
            requested=target.value,
        )
    refreshed = session.scalar(
        select(Evaluation).where(Evaluation.id == evaluation_id).execution_options(populate_existing=True)
    )
    assert refreshed is not None
    return refreshed

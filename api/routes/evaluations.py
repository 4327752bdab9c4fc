"""Evaluations: evaluate a finished job's student on more domains, read the results, cancel."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import CurrentTeam, EnqueuerDep, SessionDep, SettingsDep
from api.errors import responses
from service import evaluations, jobs
from service.errors import ValidationFailed
from service.models import JobStatus
from service.schemas import EvaluationCreate, EvaluationList, EvaluationRead
from service.spec_checks import check_dataset_ref

_logger = logging.getLogger(__name__)
router = APIRouter(tags=["evaluations"])


@router.post(
    "/v1/jobs/{job_id}/evaluations",
    status_code=202,
    response_model=EvaluationRead,
    summary="Evaluate a job's student on more domains",
    description="Queue an evaluation on registered, valid datasets. 409 unless the job succeeded.",
    responses=responses(401, 404, 409, 413, 415, 422),
)
def create_evaluation(
    job_id: str,
    body: EvaluationCreate,
    team: CurrentTeam,
    session: SessionDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
) -> EvaluationRead:
    job = jobs.get_job(session=session, job_id=job_id, team_id=team.id)
    errors: list[dict[str, Any]] = []
    for index, target in enumerate(body.targets):
        check_dataset_ref(
            session=session, team_id=team.id, field=f"targets[{index}]", ref=target, needs_labels=True, errors=errors
        )
    if errors:
        raise ValidationFailed(errors)
    evaluation = evaluations.create_evaluation(
        session=session, job=job, targets=body.targets, max_attempts=settings.max_attempts
    )
    session.commit()
    try:
        enqueuer.enqueue_evaluation(evaluation.id, evaluation.queue)
    except Exception:  # committed: the workers' sweeper re-sends evaluations queued too long (queued_resend_s)
        _logger.exception("could not enqueue evaluation %s", evaluation.id)
    return EvaluationRead.model_validate(evaluation)


@router.get(
    "/v1/jobs/{job_id}/evaluations",
    response_model=EvaluationList,
    summary="List a job's evaluations",
    description="Newest first.",
    responses=responses(401, 404),
)
def list_evaluations(job_id: str, team: CurrentTeam, session: SessionDep) -> EvaluationList:
    jobs.get_job(session=session, job_id=job_id, team_id=team.id)
    rows = evaluations.list_evaluations(session=session, job_id=job_id)
    return EvaluationList(items=[EvaluationRead.model_validate(r) for r in rows])


@router.get(
    "/v1/evaluations",
    response_model=EvaluationList,
    summary="List the team's evaluations",
    description="Every job's, newest first (deleted jobs' left out); `status` (repeatable) filters, `limit` caps.",
    responses=responses(401, 422),
)
def list_team_evaluations(
    team: CurrentTeam,
    session: SessionDep,
    status: Annotated[list[JobStatus] | None, Query(description="Repeat to match several states")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> EvaluationList:
    rows = evaluations.list_team_evaluations(
        session=session, team_id=team.id, statuses=[s.value for s in status or []], limit=limit
    )
    return EvaluationList(items=[EvaluationRead.model_validate(r) for r in rows])


@router.get(
    "/v1/evaluations/{evaluation_id}",
    response_model=EvaluationRead,
    summary="Read an evaluation",
    description="Status and results: per domain {miou, per_class_iou, pixel_accuracy, images}.",
    responses=responses(401, 404),
)
def read_evaluation(evaluation_id: str, team: CurrentTeam, session: SessionDep) -> EvaluationRead:
    evaluation = evaluations.get_evaluation(session=session, evaluation_id=evaluation_id, team_id=team.id)
    return EvaluationRead.model_validate(evaluation)


@router.post(
    "/v1/evaluations/{evaluation_id}/cancel",
    status_code=202,
    response_model=EvaluationRead,
    summary="Cancel an evaluation",
    description="A queued evaluation is cancelled at once; a running one moves to `cancelling` and stops "
    "before its next target. 409 when the evaluation is already finished.",
    responses=responses(401, 404, 409),
)
def cancel_evaluation(evaluation_id: str, team: CurrentTeam, session: SessionDep) -> EvaluationRead:
    evaluation = evaluations.request_cancel(session=session, evaluation_id=evaluation_id, team_id=team.id)
    session.commit()
    return EvaluationRead.model_validate(evaluation)

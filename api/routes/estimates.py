"""``POST /v1/jobs:estimate``: a JobSpec's plan and cost (steps, FLOPs, memory, GPU-hours) without queueing it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query

from api.deps import CurrentTeam, SessionDep, SettingsDep
from api.errors import responses
from service.estimate import JobEstimate, estimate_job
from service.schemas import JOB_SPEC_EXAMPLE, JobSpec
from service.spec_checks import check_job_spec

router = APIRouter(prefix="/v1", tags=["jobs"])


@router.post(
    "/jobs:estimate",
    response_model=JobEstimate,
    summary="Estimate a job before submitting it",
    description="Validates the JobSpec exactly as `POST /v1/jobs` does (the same 422 problems) and returns, "
    "per training stage: steps, images, global batch, FLOPs per step and in total, a rough peak memory per GPU, "
    "and GPU-hours per GPU kind from the throughput table bench/gpu_check.py fills. A GPU kind without a "
    "measurement has `hours: null` and the reason. Nothing is stored or queued.",
    responses=responses(401, 413, 415, 422),
)
def estimate(
    team: CurrentTeam,
    session: SessionDep,
    settings: SettingsDep,
    spec: Annotated[JobSpec, Body(openapi_examples={"gkd": {"summary": "GKD, tiny", "value": JOB_SPEC_EXAMPLE}})],
    gpu_kind: Annotated[
        list[str] | None,
        Query(max_length=100, description="GPU kinds to price (repeat); default: every kind measured"),
    ] = None,
) -> JobEstimate:
    check_job_spec(session=session, team_id=team.id, spec=spec, settings=settings)
    return estimate_job(session=session, team_id=team.id, spec=spec, gpu_kinds=gpu_kind)

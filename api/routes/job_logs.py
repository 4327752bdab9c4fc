"""Job logs: what each attempt's training printed (tracebacks included), stored when the attempt ends."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from api.deps import CurrentTeam, SessionDep, StoreDep
from api.errors import responses
from service import jobs as job_service
from service.errors import NotFound
from service.schemas import JobLogList, JobLogRead
from service.storage import ObjectNotFound
from service.training_logs import LOG_MAX_BYTES, attempt_of, log_key, log_prefix, tail_lines

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get(
    "/{job_id}/logs",
    response_model=JobLogList,
    summary="List a job's training logs",
    description="One log per attempt that reached training: the ranks' output, tracebacks included (the last "
    f"{LOG_MAX_BYTES // 2**20} MiB of it), stored when the attempt ended, whatever its outcome.",
    responses=responses(401, 404),
)
def list_logs(job_id: str, team: CurrentTeam, session: SessionDep, store: StoreDep) -> JobLogList:
    job_service.get_job(session=session, job_id=job_id, team_id=team.id)
    found = [(attempt_of(v.key), v.size) for v in store.list_versions(log_prefix(job_id))]
    logs = sorted((attempt, size) for attempt, size in found if attempt is not None)
    return JobLogList(items=[JobLogRead(attempt=attempt, size=size) for attempt, size in logs])


@router.get(
    "/{job_id}/logs/{attempt}",
    response_class=PlainTextResponse,
    summary="Read one attempt's training log",
    description="Plain text; `tail_lines` keeps the last lines only.",
    responses={200: {"content": {"text/plain": {}}}, **responses(401, 404, 422)},
)
def read_log(
    job_id: str,
    attempt: int,
    team: CurrentTeam,
    session: SessionDep,
    store: StoreDep,
    tail_lines_: Annotated[int | None, Query(alias="tail_lines", ge=0, le=1_000_000)] = None,
) -> PlainTextResponse:
    job_service.get_job(session=session, job_id=job_id, team_id=team.id)
    try:
        data = store.get_bytes(log_key(job_id, attempt))
    except ObjectNotFound as exc:
        raise NotFound(f"job {job_id} has no log of attempt {attempt}; GET /v1/jobs/{job_id}/logs lists them") from exc
    text = tail_lines(data.decode("utf-8", errors="replace"), tail_lines_)
    return PlainTextResponse(text)

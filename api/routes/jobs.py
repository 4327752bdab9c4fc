"""Jobs: submit (validate -> insert -> commit -> enqueue), list, read, cancel, events, metrics, artifacts."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Header, Query, Response
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from sqlalchemy.orm import Session

from api.deps import CurrentTeam, EnqueuerDep, SessionDep, SettingsDep, StoreDep
from api.errors import responses
from service import jobs as job_service
from service.errors import BadRequest, Conflict, JobNotFound, ValidationFailed, field_error
from service.idempotency import MAX_KEY_LENGTH, request_hash
from service.models import Job, JobStatus
from service.pagination import decode_token, encode_token
from service.plan import plan_json
from service.schemas import (
    JOB_SPEC_EXAMPLE,
    ArtifactLink,
    ArtifactList,
    ArtifactRead,
    JobEventList,
    JobEventRead,
    JobPage,
    JobRead,
    JobSpec,
    Method,
    MetricList,
    MetricRead,
)
from service.spec_checks import check_job_spec
from service.storage import StorageError, StorageUnavailable
from service.zoo import Lineage, SpecLookup, job_lineage

_logger = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


def _team_specs(session: Session, team_id: str) -> SpecLookup:
    """Look up the team's own jobs' specs, so weights taken from another job are traced to their licences."""

    def spec_of(job_id: str) -> dict[str, Any] | None:
        try:
            return job_service.get_job(session=session, job_id=job_id, team_id=team_id).spec
        except JobNotFound:
            return None

    return spec_of


def _lineage(session: Session, job: Job) -> Lineage:
    return job_lineage(job.spec, lookup=_team_specs(session, job.team_id))


def _job_response(
    job: Job, status_code: int, *, replayed: bool = False, lineage: Lineage | None = None
) -> JSONResponse:
    headers = {"Location": f"/v1/jobs/{job.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    read = JobRead.from_job(job, lineage=None if lineage is None else lineage.to_dict())
    return JSONResponse(read.model_dump(mode="json"), status_code=status_code, headers=headers)


def _replay_or_conflict(session: Session, existing: Job, digest: str, key: str) -> JSONResponse:
    if existing.request_hash != digest:
        raise Conflict(f"Idempotency-Key {key!r} was already used with a different body; use a new key")
    return _job_response(existing, 201, replayed=True, lineage=_lineage(session, existing))


@router.post(
    "",
    status_code=201,
    response_model=JobRead,
    summary="Submit a job",
    description="Validate a JobSpec and queue it. Every problem is a 422 naming the field and the fix. "
    "With `Idempotency-Key`, the same key and body return the same job (header `Idempotent-Replayed: true`); "
    "the same key with another body is 409.",
    responses=responses(400, 401, 409, 413, 415, 422),
)
def submit_job(
    team: CurrentTeam,
    session: SessionDep,
    settings: SettingsDep,
    enqueuer: EnqueuerDep,
    spec: Annotated[JobSpec, Body(openapi_examples={"gkd": {"summary": "GKD, tiny", "value": JOB_SPEC_EXAMPLE}})],
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", description="Any unique string (e.g. a UUID) per logical submit")
    ] = None,
) -> JSONResponse:
    if idempotency_key is not None and not (0 < len(idempotency_key) <= MAX_KEY_LENGTH):
        raise BadRequest(f"Idempotency-Key must be 1..{MAX_KEY_LENGTH} characters")
    digest = request_hash(spec.model_dump(mode="json"))
    if idempotency_key:
        existing = job_service.find_by_idempotency_key(session=session, team_id=team.id, key=idempotency_key)
        if existing is not None:
            return _replay_or_conflict(session, existing, digest, idempotency_key)
    check_job_spec(session=session, team_id=team.id, spec=spec, settings=settings)
    # The licence lineage goes into the first event; a teacher licence that forbids or restricts commercial
    # use, or is unknown, adds a warning event.
    lineage = job_lineage(spec.model_dump(mode="json"), lookup=_team_specs(session, team.id))
    try:
        job = job_service.create_job(
            session=session,
            team_id=team.id,
            spec=spec,
            max_attempts=settings.max_attempts,
            idempotency_key=idempotency_key,
            request_hash=digest if idempotency_key else None,
            message=f"job queued; lineage: {lineage.text()}",
        )
        for warning in lineage.warnings:
            job_service.record_event(session=session, job_id=job.id, message=warning, type="warning")
        session.commit()
    except Conflict:
        session.rollback()
        assert idempotency_key is not None
        winner = job_service.find_by_idempotency_key(session=session, team_id=team.id, key=idempotency_key)
        if winner is None:
            raise
        return _replay_or_conflict(session, winner, digest, idempotency_key)
    try:
        enqueuer.enqueue_job(job.id, job.queue)
    except Exception:  # broker down: the job is committed and the sweeper re-sends queued jobs
        _logger.exception("could not enqueue job %s; the sweeper will retry", job.id)
    return _job_response(job, 201, lineage=lineage)


@router.get(
    "",
    response_model=JobPage,
    summary="List jobs",
    description="The team's jobs, newest first (created_at desc, id desc). Filters apply before the page limit; "
    "pass `next_page_token` back as `page_token` with the same filters for the next page.",
    responses=responses(400, 401, 422),
)
def list_jobs(
    team: CurrentTeam,
    session: SessionDep,
    settings: SettingsDep,
    status: Annotated[list[JobStatus] | None, Query(description="Repeat to match several states")] = None,
    method: Annotated[Method | None, Query()] = None,
    created_after: Annotated[datetime | None, Query(description="ISO 8601; naive times are UTC")] = None,
    page_size: Annotated[
        int, Query(ge=1, le=1000, description="Jobs per page; more than GKD_MAX_PAGE_SIZE (default 100) gets that many")
    ] = 20,
    page_token: Annotated[str | None, Query(max_length=2000)] = None,
) -> JobPage:
    # A larger page is served at the server's limit: next_page_token still leads through every job, and
    # clients built for the default (the SDK's iter_jobs, the dashboard) keep working under a lower one.
    page_size = min(page_size, settings.max_page_size)
    if created_after is not None and created_after.tzinfo is None:
        created_after = created_after.replace(tzinfo=UTC)
    statuses = sorted(s.value for s in status or [])
    filters: dict[str, Any] = {
        "status": statuses,
        "method": method,
        "created_after": created_after.isoformat() if created_after else None,
    }
    cursor = decode_token(page_token, filters=filters, secret=settings.secret_key) if page_token else None
    page, next_cursor = job_service.list_jobs(
        session=session,
        team_id=team.id,
        status=statuses,
        method=method,
        created_after=created_after,
        page_size=page_size,
        after=cursor,
    )
    token = encode_token(next_cursor, filters=filters, secret=settings.secret_key) if next_cursor else None
    return JobPage(items=[JobRead.from_job(job) for job in page], next_page_token=token)


@router.get(
    "/{job_id}",
    response_model=JobRead,
    summary="Read a job",
    description="Status, phase, progress 0..1, ETA, attempt, timestamps, spec, error and the per-domain mIoU summary.",
    responses=responses(401, 404),
)
def read_job(job_id: str, team: CurrentTeam, session: SessionDep) -> JobRead:
    job = job_service.get_job(session=session, job_id=job_id, team_id=team.id)
    read = JobRead.from_job(job, lineage=_lineage(session, job).to_dict())
    read.plan = plan_json(session=session, team_id=team.id, spec=job.spec)
    return read


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobRead,
    summary="Cancel a job",
    description="A queued job is cancelled at once; a running one moves to `cancelling` and stops within "
    "seconds (it saves a checkpoint). 409 when the job is already finished.",
    responses=responses(401, 404, 409),
)
def cancel_job(job_id: str, team: CurrentTeam, session: SessionDep) -> JobRead:
    job = job_service.request_cancel(session=session, job_id=job_id, team_id=team.id)
    session.commit()
    return JobRead.from_job(job)


@router.delete(
    "/{job_id}",
    status_code=204,
    summary="Delete a job",
    description="Remove a finished job's artifacts and checkpoints from storage and hide the job: afterwards "
    "every read of it is a 404. Deleting it again changes nothing (204). A queued or running job is a 409: "
    "cancel it first.",
    responses=responses(404, 409),
)
def delete_job(job_id: str, team: CurrentTeam, session: SessionDep, store: StoreDep) -> Response:
    job_service.delete_job(session=session, job_id=job_id, team_id=team.id, store=store)
    session.commit()
    return Response(status_code=204)


@router.get(
    "/{job_id}/events",
    response_model=JobEventList,
    summary="Lifecycle history",
    description="Every transition, phase change and notable message, oldest first.",
    responses=responses(401, 404),
)
def job_events(job_id: str, team: CurrentTeam, session: SessionDep) -> JobEventList:
    job_service.get_job(session=session, job_id=job_id, team_id=team.id)
    events = job_service.list_events(session=session, job_id=job_id)
    return JobEventList(items=[JobEventRead.model_validate(e) for e in events])


@router.get(
    "/{job_id}/metrics",
    response_model=MetricList,
    summary="Loss curves",
    description="Rows of {stage, step, epoch, name, value}. To read them all and then follow a running job, "
    "start with `after=0` and pass `next_after` back: rows come in the order they were written, none skipped or "
    "repeated although each stage counts its steps from 1, and `more` says another page is waiting. `tail=N` "
    "gives the last N rows written and the cursor after them (to follow a job from now on). Without `after` or "
    "`tail` they come in step order; `stage` keeps one stage, `since_step` rows past a step.",
    responses=responses(401, 404, 422),
)
def job_metrics(
    job_id: str,
    team: CurrentTeam,
    session: SessionDep,
    since_step: Annotated[int | None, Query(ge=-1, le=2**31 - 1)] = None,
    stage: Annotated[str | None, Query(max_length=32, description="One stage's rows, e.g. stage1b")] = None,
    after: Annotated[int | None, Query(ge=0, le=2**63 - 1, description="`next_after` of the previous call")] = None,
    tail: Annotated[int | None, Query(ge=1, le=10_000, description="The last N rows written")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
) -> MetricList:
    job_service.get_job(session=session, job_id=job_id, team_id=team.id)
    if tail is not None:
        if after is not None:
            raise ValidationFailed([field_error("tail", "tail and after cannot be combined", "use one of them")])
        rows = job_service.list_metrics(session=session, job_id=job_id, since_step=since_step, stage=stage,
                                        tail=True, limit=tail)  # fmt: skip
        return MetricList(
            items=[MetricRead.model_validate(r) for r in rows],
            last_step=rows[-1].step if rows else None,
            next_after=rows[-1].id if rows else 0,
        )
    rows = job_service.list_metrics(
        session=session, job_id=job_id, since_step=since_step, stage=stage, after=after, limit=limit + 1
    )
    more, rows = len(rows) > limit, rows[:limit]
    return MetricList(
        items=[MetricRead.model_validate(r) for r in rows],
        last_step=rows[-1].step if rows else None,
        next_after=(rows[-1].id if rows else after) if after is not None else None,
        more=more,
    )


@router.get(
    "/{job_id}/artifacts",
    response_model=ArtifactList,
    summary="List artifacts",
    description="name, kind (checkpoint, student, onnx, model_card, report), size, sha256, created_at.",
    responses=responses(401, 404),
)
def job_artifacts(job_id: str, team: CurrentTeam, session: SessionDep) -> ArtifactList:
    job_service.get_job(session=session, job_id=job_id, team_id=team.id)
    rows = job_service.list_artifacts(session=session, job_id=job_id)
    return ArtifactList(items=[ArtifactRead.model_validate(a) for a in rows])


@router.get(
    "/{job_id}/artifacts/{name:path}:link",
    response_model=ArtifactLink,
    summary="Get a link to an artifact",
    description="A presigned URL that needs no API key (S3), valid for the server's `GKD_PRESIGN_EXPIRY_S`; "
    "with a local store, the download route itself (`requires_key`: send the Authorization header there). "
    "Browsers use it to download straight from the object store, with no CORS setup on the bucket.",
    responses=responses(401, 404, 503),
)
def artifact_link(
    job_id: str, name: str, team: CurrentTeam, session: SessionDep, settings: SettingsDep, store: StoreDep
) -> ArtifactLink:
    job_service.get_job(session=session, job_id=job_id, team_id=team.id)
    artifact = job_service.get_artifact(session=session, job_id=job_id, name=name)
    issued = datetime.now(UTC)
    try:
        url = store.presigned_url(artifact.storage_key, settings.presign_expiry_s, filename=artifact.name)
    except StorageError as exc:
        raise StorageUnavailable(f"could not sign a link to artifact {name!r}: {exc}") from exc
    requires_key = url is None
    if url is None:
        url = f"{router.prefix}/{quote(job_id, safe='')}/artifacts/{quote(artifact.name)}"
    return ArtifactLink(
        name=artifact.name,
        size=artifact.size,
        sha256=artifact.sha256,
        url=url,
        requires_key=requires_key,
        expires_at=None if requires_key else issued + timedelta(seconds=settings.presign_expiry_s),
    )


@router.get(
    "/{job_id}/artifacts/{name:path}",
    summary="Download an artifact",
    description="307 redirect to a presigned URL (S3), or the file itself (local store). "
    "The `X-Checksum-SHA256` header carries the expected hash.",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        307: {"description": "Presigned URL"},
        **responses(401, 404, 503),
    },
)
def download_artifact(
    job_id: str, name: str, team: CurrentTeam, session: SessionDep, settings: SettingsDep, store: StoreDep
) -> Response:
    job_service.get_job(session=session, job_id=job_id, team_id=team.id)
    artifact = job_service.get_artifact(session=session, job_id=job_id, name=name)
    headers = {"X-Checksum-SHA256": artifact.sha256}
    try:
        url = store.presigned_url(artifact.storage_key, settings.presign_expiry_s, filename=artifact.name)
        path = store.local_path(artifact.storage_key) if url is None else None
    except StorageError as exc:
        raise StorageUnavailable(f"could not read artifact {name!r}: {exc}") from exc
    if url is not None:
        return RedirectResponse(url, status_code=307, headers=headers)
    assert path is not None, f"{store!r} broke the ArtifactStore contract: neither a URL nor a local file"
    return FileResponse(path, media_type="application/octet-stream", filename=name.rsplit("/", 1)[-1], headers=headers)

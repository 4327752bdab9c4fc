"""The job service: create/get/list for the API, claim/heartbeat/finish for workers.

The state machine is service/lifecycle.py's, shared with evaluations and bound here to the jobs table
(``LIFECYCLE``): every status change is a compare-and-set UPDATE (``WHERE id = :id AND status IN
:expected``) plus a job_events row, in the caller's transaction; the caller commits. Allowed transitions:

    queued     -> running (claim) | cancelled (cancel) | failed
    running    -> succeeded | failed | cancelling (cancel) | cancelled | queued (requeue after a lost worker)
    cancelling -> cancelled | failed
    succeeded, failed, cancelled: terminal
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from service import team_limits
from service.errors import Conflict, InvalidTransition, JobNotFound
from service.lifecycle import ALLOWED_TRANSITIONS as ALLOWED_TRANSITIONS  # re-exported: the state machine
from service.lifecycle import Lifecycle
from service.models import (
    TERMINAL_STATUSES,
    Artifact,
    Evaluation,
    FailureReason,
    Job,
    JobEvent,
    JobPhase,
    JobStatus,
    MetricPoint,
    utcnow,
)
from service.notify import outbox
from service.pagination import Cursor
from service.schemas import JobSpec
from service.storage import ArtifactStore

_logger = logging.getLogger(__name__)
_ID = re.compile(r"^[0-9a-fA-F-]{1,36}$")


def is_id(value: str) -> bool:
    """Whether ``value`` can be one of our UUID ids (anything else is simply not found, never a DB error)."""
    return bool(_ID.match(value))


# --- create, read, list (API) -------------------------------------------------------------


def create_job(
    *,
    session: Session,
    team_id: str,
    spec: JobSpec,
    max_attempts: int = 3,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    message: str = "job queued",
) -> Job:
    """Insert a queued job with its first event and flush (the caller commits, then enqueues).

    ``message`` is the first event's text (the API puts the licence lineage there).

    With an idempotency key, a concurrent duplicate loses on the (team_id, idempotency_key) unique
    constraint; that IntegrityError becomes ``Conflict`` so the caller can re-read the winner.
    """
    job = Job(
        team_id=team_id,
        name=spec.name,
        method=spec.method,
        queue=spec.resources.queue,
        status=JobStatus.QUEUED.value,
        spec=spec.model_dump(mode="json"),
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    now = utcnow()
    job.created_at = now
    job.updated_at = now
    try:
        with session.begin_nested():
            session.add(job)
            session.flush()
    except IntegrityError as exc:
        raise Conflict(f"a job with Idempotency-Key {idempotency_key!r} was created concurrently") from exc
    session.add(
        JobEvent(
            job_id=job.id, time=now, type="created", message=message, attempt=0, to_status=JobStatus.QUEUED.value
        )
    )
    session.flush()
    return job


def find_by_idempotency_key(*, session: Session, team_id: str, key: str) -> Job | None:
    """The team's job created with this Idempotency-Key, if any."""
    return session.scalar(select(Job).where(Job.team_id == team_id, Job.idempotency_key == key))


def get_job(*, session: Session, job_id: str, team_id: str | None = None) -> Job:
    """The job, scoped to ``team_id`` when given (other teams' jobs, and deleted ones, are simply not found)."""
    if not is_id(job_id):
        raise JobNotFound(f"no job {job_id[:64]!r}")
    query = select(Job).where(Job.id == job_id)
    if team_id is not None:
        query = query.where(Job.team_id == team_id, Job.deleted_at.is_(None))
    job = session.scalar(query)
    if job is None:
        raise JobNotFound(f"no job {job_id!r}")
    return job


def list_jobs(
    *,
    session: Session,
    team_id: str,
    status: Iterable[str] | None = None,
    method: str | None = None,
    created_after: datetime | None = None,
    page_size: int = 20,
    after: Cursor | None = None,
) -> tuple[list[Job], Cursor | None]:
    """A page of the team's jobs, newest first (created_at desc, id desc), filters applied in SQL.

    Returns the page and the cursor of its last row when another page follows.
    """
    query = select(Job).where(Job.team_id == team_id, Job.deleted_at.is_(None))
    statuses = list(status or [])
    if statuses:
        query = query.where(Job.status.in_(statuses))
    if method:
        query = query.where(Job.method == method)
    if created_after is not None:
        query = query.where(Job.created_at > created_after)
    if after is not None:
        query = query.where(
            or_(Job.created_at < after.created_at, and_(Job.created_at == after.created_at, Job.id < after.id))
        )
    rows = list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(page_size + 1)))
    page = rows[:page_size]
    more = len(rows) > page_size
    return page, (Cursor(created_at=page[-1].created_at, id=page[-1].id) if more and page else None)


def delete_job(*, session: Session, job_id: str, team_id: str, store: ArtifactStore) -> None:
    """Remove a terminal job's stored objects (artifacts, checkpoints) and hide the job from its team.

    Deleting a deleted job changes nothing. A job that is not terminal, or has an evaluation that has not
    ended (it reads the job's student), is a Conflict: cancel it first. Storage is emptied before the row is
    marked, so a storage outage (StorageUnavailable) leaves the job visible and a retry finishes the work.
    The job's Idempotency-Key is released, so submitting the same spec again (``gkd submit`` derives the
    key from the file) creates a new job instead of replaying the deleted one.
    """
    if not is_id(job_id):
        raise JobNotFound(f"no job {job_id[:64]!r}")
    job = session.scalar(select(Job).where(Job.id == job_id, Job.team_id == team_id))
    if job is None:
        raise JobNotFound(f"no job {job_id!r}")
    if job.deleted_at is not None:
        return
    if JobStatus(job.status) not in TERMINAL_STATUSES:
        raise InvalidTransition(
            f"job {job_id} is {job.status}; cancel it first (POST /v1/jobs/{job_id}/cancel), then delete it",
            current=job.status,
            requested="delete",
        )
    ended = [status.value for status in TERMINAL_STATUSES]  # evaluations share the jobs' lifecycle
    busy = list(
        session.scalars(
            select(Evaluation.id).where(Evaluation.job_id == job_id, Evaluation.status.not_in(ended))
        )
    )
    if busy:
        raise Conflict(
            f"job {job_id} has evaluations that have not ended ({', '.join(busy)}); cancel them "
            "(POST /v1/evaluations/{id}/cancel) or wait for them, then delete the job"
        )
    starting = weight_readers(session=session, team_id=team_id, job_id=job_id)
    if starting:
        raise Conflict(
            f"{', '.join(starting)} start from job {job_id}'s weights (artifact://{job_id}/...) and have not "
            "ended; cancel them or wait for them, then delete the job"
        )
    keys = store.list(f"jobs/{job_id}/")
    for key in keys:
        store.delete(key)
    session.execute(sa_delete(Artifact).where(Artifact.job_id == job_id))
    session.execute(sa_delete(MetricPoint).where(MetricPoint.job_id == job_id))  # a long job's rows are many
    job.deleted_at = utcnow()
    job.idempotency_key = None
    add_event(session=session, job=job, type="deleted", message=f"deleted: {len(keys)} stored objects removed")
    session.flush()


def weight_readers(*, session: Session, team_id: str, job_id: str) -> list[str]:
    """The team's jobs not yet ended whose teacher or student starts from one of ``job_id``'s artifacts."""
    prefix = f"artifact://{job_id}/"
    ended = [status.value for status in TERMINAL_STATUSES]
    found = []
    for job in session.scalars(select(Job).where(Job.team_id == team_id, Job.status.not_in(ended))):
        spec = job.spec or {}
        if any(str((spec.get(role) or {}).get("weights", "")).startswith(prefix) for role in ("teacher", "student")):
            found.append(f"job {job.id}")
    return found


def add_event(
    *,
    session: Session,
    job: Job,
    type: str,
    message: str = "",
    from_status: str | None = None,
    to_status: str | None = None,
) -> None:
    """Append one event row for ``job`` at its current attempt."""
    session.add(
        JobEvent(
            job_id=job.id,
            time=utcnow(),
            type=type,
            message=message,
            attempt=job.attempt,
            from_status=from_status,
            to_status=to_status,
        )
    )


def _job_event(
    session: Session, job: Job, type: str, message: str, from_status: str | None, to_status: str | None
) -> None:
    add_event(session=session, job=job, type=type, message=message, from_status=from_status, to_status=to_status)
    if to_status is not None:  # a status change: queue the job's notification if its spec asks for this status
        outbox.record_status_change(session=session, job=job, from_status=from_status, to_status=to_status)


def _failure_columns(reason: str, detail: str | None) -> dict[str, Any]:
    return {"error_reason": reason, "error_detail": detail}


# The shared lifecycle (service/lifecycle.py) bound to the jobs table; evaluations have their own.
LIFECYCLE: Lifecycle[Job] = Lifecycle(
    model=Job,
    noun="job",
    not_found=JobNotFound,
    failure_columns=_failure_columns,
    on_event=_job_event,
    reset={"heartbeat_at": None, "phase": None, "eta_s": None, "waiting_reason": None},
)


def transition(
    *,
    session: Session,
    job_id: str,
    to: JobStatus | str,
    expected_from: JobStatus | str | Iterable[JobStatus | str] | None = None,
    message: str = "",
    event_type: str = "transition",
    values: Mapping[str, Any] | None = None,
) -> Job:
    """Move a job to ``to`` if (and only if) it is still in one of ``expected_from`` (see Lifecycle.transition)."""
    return LIFECYCLE.transition(
        session=session, row_id=job_id, to=to, expected_from=expected_from, message=message,
        event_type=event_type, values=values,
    )  # fmt: skip


def request_cancel(*, session: Session, job_id: str, team_id: str | None = None) -> Job:
    """Cancel: a queued job is cancelled at once; a running one goes to cancelling with the flag set.

    Cancelling an already-cancelling job is a no-op; a terminal job raises InvalidTransition (409).
    """
    return LIFECYCLE.request_cancel(session=session, row=get_job(session=session, job_id=job_id, team_id=team_id))


# --- worker side ----------------------------------------------------------------------------


def claim_job(
    *, session: Session, job_id: str, worker: str | None = None, limits: team_limits.TeamLimits | None = None
) -> Job | None:
    """queued -> running with attempt + 1; None when the job is not queued (redelivery, cancelled, done),
    or when the team's ``limits`` do not allow it now (it stays queued with its waiting_reason).

    ``worker`` is the claiming worker's Celery node name; the claim event names it and the attempt.
    """
    job = session.scalar(select(Job).where(Job.id == job_id))
    if job is None:
        raise JobNotFound(f"no job {job_id!r}")
    if limits is not None and job.status == JobStatus.QUEUED.value:
        reason = team_limits.admit(session=session, job=job, limits=limits)
        if reason is not None:
            team_limits.mark_waiting(session=session, job=job, reason=reason)
            _logger.info("job %s stays queued: %s", job_id, reason)
            return None
    return LIFECYCLE.claim(session=session, row_id=job_id, worker=worker)


def heartbeat(*, session: Session, job_id: str, attempt: int | None = None) -> bool:
    """Record that the worker is alive. Returns True when the worker should stop (cancel, or superseded)."""
    return LIFECYCLE.heartbeat(session=session, row_id=job_id, attempt=attempt)


def set_phase(*, session: Session, job_id: str, phase: JobPhase | str, message: str = "") -> None:
    """Record the running job's phase, with an event when it changes."""
    job = get_job(session=session, job_id=job_id)
    new = JobPhase(phase).value
    if job.phase == new:
        return
    job.phase = new
    job.updated_at = utcnow()
    add_event(session=session, job=job, type="phase", message=message or f"phase {new}")
    session.flush()


def set_progress(
    *, session: Session, job_id: str, progress: float, eta_s: float | None = None, phase: JobPhase | str | None = None
) -> None:
    """Record overall progress (clamped to 0..1) and the ETA in seconds."""
    if phase is not None:
        set_phase(session=session, job_id=job_id, phase=phase)
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(progress=min(1.0, max(0.0, float(progress))), eta_s=eta_s, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def record_event(*, session: Session, job_id: str, message: str, type: str = "info") -> None:
    """Append a free-text event (e.g. the teacher/student alignment description)."""
    add_event(session=session, job=get_job(session=session, job_id=job_id), type=type, message=message)


_METRIC_FIELDS = ("stage", "step", "epoch", "name", "value")


def record_metrics(*, session: Session, job_id: str, rows: Iterable[Any]) -> int:
    """Bulk-insert loss-curve rows (objects or mappings with stage, step, epoch, name, value)."""
    payload = []
    for row in rows:
        data: Mapping[str, Any] = (
            row if isinstance(row, Mapping) else {k: getattr(row, k, None) for k in _METRIC_FIELDS}
        )
        epoch = data.get("epoch")
        payload.append(
            {
                "job_id": job_id,
                "stage": str(data["stage"]),
                "step": int(data["step"]),
                "epoch": None if epoch is None else int(epoch),
                "name": str(data["name"]),
                "value": float(data["value"]),
            }
        )
    if payload:
        session.execute(insert(MetricPoint), payload)
    return len(payload)


def list_metrics(
    *,
    session: Session,
    job_id: str,
    since_step: int | None = None,
    stage: str | None = None,
    after: int | None = None,
    tail: bool = False,
    limit: int = 10_000,
) -> list[MetricPoint]:
    """Metric rows in step order, or with ``after`` in the order they were written after row ``after`` (a
    cursor that never skips or repeats a row, across stages whose steps each start again at 1), or with
    ``tail`` the last ``limit`` rows written, oldest first (where a follower that wants only news starts).

    ``stage`` keeps one stage's rows; ``since_step`` only rows with a larger step.
    """
    query = select(MetricPoint).where(MetricPoint.job_id == job_id)
    if stage is not None:
        query = query.where(MetricPoint.stage == stage)
    if since_step is not None:
        query = query.where(MetricPoint.step > since_step)
    if tail:
        return list(reversed(session.scalars(query.order_by(MetricPoint.id.desc()).limit(limit)).all()))
    if after is not None:
        query = query.where(MetricPoint.id > after).order_by(MetricPoint.id)
    else:
        query = query.order_by(MetricPoint.step, MetricPoint.id)
    return list(session.scalars(query.limit(limit)))


def list_events(*, session: Session, job_id: str) -> list[JobEvent]:
    """The job's events in the order they happened."""
    return list(session.scalars(select(JobEvent).where(JobEvent.job_id == job_id).order_by(JobEvent.id)))


def add_artifact(
    *, session: Session, job_id: str, name: str, kind: str, size: int, sha256: str, storage_key: str
) -> Artifact:
    """Record a stored output; a second artifact with the same name replaces the first."""
    artifact = session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))
    if artifact is None:
        artifact = Artifact(job_id=job_id, name=name)
        session.add(artifact)
    artifact.kind, artifact.size, artifact.sha256, artifact.storage_key = kind, size, sha256, storage_key
    artifact.created_at = utcnow()
    session.flush()
    return artifact


def list_artifacts(*, session: Session, job_id: str) -> list[Artifact]:
    """The job's artifacts by name."""
    return list(session.scalars(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.name)))


def get_artifact(*, session: Session, job_id: str, name: str) -> Artifact:
    """One artifact of the job, or NotFound."""
    from service.errors import NotFound

    artifact = None
    if "\x00" not in name and len(name) <= 255:
        artifact = session.scalar(select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name))
    if artifact is None:
        raise NotFound(f"job {job_id} has no artifact {name!r}")
    return artifact


def set_summary(*, session: Session, job_id: str, summary: dict[str, Any]) -> None:
    """Store the per-domain mIoU summary (JSON-ready) shown by GET /v1/jobs/{id}."""
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(summary=summary, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def finish(
    *,
    session: Session,
    job_id: str,
    status: JobStatus | str,
    reason: FailureReason | str | None = None,
    detail: str | None = None,
    summary: dict[str, Any] | None = None,
) -> Job:
    """End a running (or cancelling) job: succeeded, failed (with reason user|infra) or cancelled."""
    target = JobStatus(status)
    values: dict[str, Any] = {"eta_s": None}
    if target is JobStatus.SUCCEEDED:
        values["progress"] = 1.0
    if summary is not None:
        values["summary"] = summary
    return LIFECYCLE.finish(session=session, row_id=job_id, status=target, reason=reason, detail=detail, values=values)


def find_stale_jobs(*, session: Session, older_than: timedelta | float, now: datetime | None = None) -> list[Job]:
    """Running/cancelling jobs whose last heartbeat is older than ``older_than`` (worker presumed lost)."""
    return LIFECYCLE.find_stale(session=session, older_than=older_than, now=now)


def find_queued_jobs(*, session: Session, older_than: timedelta | float, now: datetime | None = None) -> list[Job]:
    """Jobs queued for longer than ``older_than`` (their message may be lost; the sweeper re-sends)."""
    return LIFECYCLE.find_queued(session=session, older_than=older_than, now=now)


def requeue_stale(*, session: Session, job_id: str) -> JobStatus:
    """Recover a job whose worker was lost; returns the new status (enqueue again after commit if queued).

    A cancelling job becomes cancelled; a running one is queued again while attempts < max_attempts,
    else it fails with reason infra.
    """
    return LIFECYCLE.requeue_stale(session=session, row_id=job_id)

"""Checkpoint retention: delete the checkpoints of jobs that finished more than N days ago.

``GKD_CHECKPOINT_RETENTION_DAYS`` (unset: keep forever). Checkpoints are resume state: once a job is
terminal nothing resumes it, and they are usually the bulk of its storage. Only they go: the objects
under ``jobs/<id>/checkpoints/`` (the manifest first, so a manifest never names deleted files) and
artifacts of kind ``checkpoint``. The student, ONNX, model card, reports and TensorBoard archive stay
downloadable. Each job is handled once: ``checkpoints_deleted_at`` is set by a compare-and-set with a
``retention`` event, so concurrent sweepers on several workers record it exactly once, and a run
that died half-way is finished by the next (deleting a missing object is not an error).

Every worker's sweeper calls ``apply_retention`` on each sweep.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.models import TERMINAL_STATUSES, Artifact, Job, JobEvent, utcnow
from service.settings import Settings
from service.storage import ArtifactStore

_logger = logging.getLogger(__name__)

BATCH = 50  # jobs per sweep: a backlog (retention just switched on) drains over a few sweeps
CHECKPOINT_KIND = "checkpoint"


class RetentionContext(Protocol):
    """What retention needs from its caller (worker.context.WorkerContext has it)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> ArtifactStore: ...

    def session(self) -> AbstractContextManager[Session]: ...


def checkpoint_prefix(job_id: str) -> str:
    """Where a job's resume state lives (the same prefix worker/work_dir_sync.py writes to)."""
    return f"jobs/{job_id}/checkpoints/"


def due(*, session: Session, days: float, now: datetime | None = None, limit: int = BATCH) -> list[str]:
    """Ids of terminal, not deleted jobs that finished more than ``days`` ago and still have checkpoints."""
    cutoff = (now or utcnow()) - timedelta(days=days)
    return list(
        session.scalars(
            select(Job.id)
            .where(
                Job.status.in_([s.value for s in TERMINAL_STATUSES]),
                Job.finished_at < cutoff,
                Job.checkpoints_deleted_at.is_(None),
                Job.deleted_at.is_(None),
            )
            .order_by(Job.finished_at)
            .limit(limit)
        )
    )


def delete_checkpoints(*, session: Session, store: ArtifactStore, job_id: str) -> int:
    """Remove the job's checkpoint objects (manifest first) and checkpoint artifacts; returns objects removed."""
    prefix = checkpoint_prefix(job_id)
    manifest = f"{prefix}manifest.json"
    keys = store.list(prefix)
    if manifest in keys:
        store.delete(manifest)
    checkpoints = (Artifact.job_id == job_id, Artifact.kind == CHECKPOINT_KIND)
    artifacts = list(session.scalars(select(Artifact).where(*checkpoints)))
    for key in [k for k in keys if k != manifest] + [a.storage_key for a in artifacts]:
        store.delete(key)
    session.execute(delete(Artifact).where(*checkpoints))
    return len(keys) + len(artifacts)


def record_deleted(*, session: Session, job_id: str, removed: int, days: float) -> bool:
    """Mark the job done (compare-and-set) with its ``retention`` event; False if another sweeper was first."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.checkpoints_deleted_at.is_(None))
        .values(checkpoints_deleted_at=now)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    attempt = session.scalar(select(Job.attempt).where(Job.id == job_id)) or 0
    message = (
        f"checkpoints deleted ({removed} stored objects): finished more than {days:g} days ago "
        "(GKD_CHECKPOINT_RETENTION_DAYS); the student and the other artifacts stay"
    )
    session.add(JobEvent(job_id=job_id, time=now, type="retention", message=message, attempt=attempt))
    return True


def apply_retention(context: RetentionContext, *, now: datetime | None = None) -> list[str]:
    """Delete the checkpoints of every job past the retention period; returns the ids recorded by this call."""
    days = context.settings.checkpoint_retention_days
    if days is None:
        return []
    with context.session() as session:
        job_ids = due(session=session, days=days, now=now)
    done: list[str] = []
    for job_id in job_ids:
        with context.session() as session:
            removed = delete_checkpoints(session=session, store=context.store, job_id=job_id)
            if record_deleted(session=session, job_id=job_id, removed=removed, days=days):
                done.append(job_id)
    if done:
        _logger.info("retention: deleted the checkpoints of %d jobs: %s", len(done), done)
    return done

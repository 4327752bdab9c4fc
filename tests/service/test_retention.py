"""Checkpoint retention on SQLite and PostgreSQL, against a local folder and a real S3 server (SeaweedFS):
only checkpoints of jobs finished more than N days ago go, once, with an event; everything else stays."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session, sessionmaker

from service import jobs, retention
from service.db import session_factory, session_scope
from service.models import Job, JobEvent, JobStatus, Team, utcnow
from service.settings import Settings
from service.storage import ArtifactStore, LocalStore, S3Store
from tests.service.factories import make_job, make_team

BUCKET = "gkd-retention-tests"
KEEP = ("student.safetensors", "student.onnx", "model_card.json", "README.md", "tensorboard.tar.gz")


@dataclass
class Context:
    """What the worker hands retention: settings, a store and transactions (as worker.context does)."""

    settings: Settings
    store: ArtifactStore
    factory: sessionmaker[Session]

    @contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.factory) as session:
            yield session


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalStore(tmp_path / "artifacts")
    server = request.getfixturevalue("seaweed_s3")
    server.ensure_bucket(BUCKET)
    return S3Store(
        bucket=BUCKET,
        prefix=f"t-{uuid.uuid4().hex[:12]}",
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
        region=server.region,
    )


def _finished_job(context: Context, *, status: str, days_ago: float, team_id: str | None = None) -> str:
    """A committed terminal job with stored checkpoints (manifest + files) and the usual artifacts."""
    with context.session() as session:
        team_id = team_id or make_team(session).id
        job = make_job(session, session.get_one(Team, team_id))
        job_id = job.id
        files = {f"checkpoints/stage{s}/step{n}.pt": f"{s}-{n}".encode() * 100 for s in (1, 2) for n in (2, 4)}
        files["state.json"] = b'{"stage": "done"}'
        prefix = retention.checkpoint_prefix(job_id)
        manifest = {rel: context.store.put_bytes(f"{prefix}files/{rel}", data).sha256 for rel, data in files.items()}
        context.store.put_bytes(f"{prefix}manifest.json", json.dumps({"files": manifest}).encode())
        for name in KEEP:
            obj = context.store.put_bytes(f"jobs/{job_id}/artifacts/{name}", f"{name} of {job_id}".encode())
            jobs.add_artifact(
                session=session, job_id=job_id, name=name, kind="student", size=obj.size, sha256=obj.sha256,
                storage_key=obj.key,
            )  # fmt: skip
        obj = context.store.put_bytes(f"jobs/{job_id}/artifacts/final.ckpt", b"a checkpoint kept as an artifact")
        jobs.add_artifact(
            session=session, job_id=job_id, name="final.ckpt", kind="checkpoint", size=obj.size, sha256=obj.sha256,
            storage_key=obj.key,
        )  # fmt: skip
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(status=status, finished_at=utcnow() - timedelta(days=days_ago))
            .execution_options(synchronize_session=False)
        )
    return job_id


def _events(context: Context, job_id: str) -> list[str]:
    with context.session() as session:
        rows = session.scalars(select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.type == "retention"))
        return [row.message for row in rows]


def test_retention_deletes_only_old_checkpoints_once(engine: Engine, store: ArtifactStore) -> None:
    context = Context(Settings(checkpoint_retention_days=7), store, session_factory(engine))
    old = {s: _finished_job(context, status=s, days_ago=10) for s in ("succeeded", "failed", "cancelled")}
    recent = _finished_job(context, status="succeeded", days_ago=6)

    done = retention.apply_retention(context)
    assert set(old.values()) <= set(done) and recent not in done
    for job_id in old.values():
        assert store.list(retention.checkpoint_prefix(job_id)) == []
        with context.session() as session:
            job = jobs.get_job(session=session, job_id=job_id)
            artifacts = {a.name: a for a in jobs.list_artifacts(session=session, job_id=job_id)}
        assert job.checkpoints_deleted_at is not None
        assert set(artifacts) == set(KEEP)  # the checkpoint artifact went, the student and the rest stay
        assert not store.exists(f"jobs/{job_id}/artifacts/final.ckpt")
        for artifact in artifacts.values():  # still downloadable, bytes intact
            assert hashlib.sha256(store.get_bytes(artifact.storage_key)).hexdigest() == artifact.sha256
        (message,) = _events(context, job_id)
        assert "checkpoints deleted (7 stored objects)" in message and "the student" in message
    assert len(store.list(retention.checkpoint_prefix(recent))) == 6  # 5 files + manifest
    assert _events(context, recent) == []

    # Idempotent: nothing left to do, no second event.
    assert not set(old.values()) & set(retention.apply_retention(context))
    assert all(len(_events(context, job_id)) == 1 for job_id in old.values())
    # Six days later the recent job's turn comes.
    assert recent in retention.apply_retention(context, now=utcnow() + timedelta(days=2))
    assert store.list(retention.checkpoint_prefix(recent)) == []


def test_unset_retention_keeps_everything(engine: Engine, store: ArtifactStore) -> None:
    context = Context(Settings(), store, session_factory(engine))
    job_id = _finished_job(context, status="succeeded", days_ago=365)
    assert retention.apply_retention(context) == []
    assert len(store.list(retention.checkpoint_prefix(job_id))) == 6


def test_running_and_deleted_jobs_are_left_alone(engine: Engine, store: ArtifactStore) -> None:
    context = Context(Settings(checkpoint_retention_days=0), store, session_factory(engine))
    running = _finished_job(context, status="running", days_ago=30)
    deleted = _finished_job(context, status="succeeded", days_ago=30)
    with context.session() as session:
        session.execute(update(Job).where(Job.id == deleted).values(deleted_at=utcnow()))
    done = retention.apply_retention(context)
    assert running not in done and deleted not in done
    assert len(store.list(retention.checkpoint_prefix(running))) == 6


def test_the_prefix_is_where_the_worker_writes_checkpoints() -> None:
    from worker.work_dir_sync import checkpoint_prefix

    assert retention.checkpoint_prefix("abc") == checkpoint_prefix("abc") + "/"


def test_a_second_sweeper_records_nothing(engine: Engine, store: ArtifactStore) -> None:
    """Two workers' sweepers race on one job: storage is emptied by both, the event is written once."""
    context = Context(Settings(checkpoint_retention_days=1), store, session_factory(engine))
    job_id = _finished_job(context, status=JobStatus.SUCCEEDED.value, days_ago=2)
    with context.session() as session:
        assert retention.delete_checkpoints(session=session, store=store, job_id=job_id) == 7
        assert retention.record_deleted(session=session, job_id=job_id, removed=7, days=1)
    with context.session() as session:
        assert retention.delete_checkpoints(session=session, store=store, job_id=job_id) == 0
        assert not retention.record_deleted(session=session, job_id=job_id, removed=0, days=1)
    assert len(_events(context, job_id)) == 1

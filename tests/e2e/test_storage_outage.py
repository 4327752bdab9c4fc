"""Stop the S3 server (SeaweedFS) in the middle of a job: a short outage is waited out, a long one fails the job.

A real Celery worker stores checkpoints and artifacts in a SeaweedFS server that this test owns, so it
can SIGKILL the server and start it again on the same ports and data. The database and broker are
embedded (SQLite), as in test_kill_resume.py: the outage is the object store's alone.

- 30 s without storage, window 300 s: the job waits (an "outage" event says so), then succeeds in its
  first attempt, with every artifact stored and listed.
- Storage gone for longer than a short window (8 s): the job fails with reason infra, names the window and
  the storage error, uses no further attempt, and lists no artifact.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service import auth, jobs
from service.datasets import register_dataset
from service.db import upgrade_database
from service.queue import enqueue_job
from service.schemas import DatasetCreate, JobSpec
from service.settings import Settings
from tests.support.seaweed import SeaweedS3, start_seaweed
from tests.support.worker_env import WorkerProcess, gkd_env, tiny_spec, wait_for
from worker.context import WorkerContext
from worker.work_dir_sync import checkpoint_prefix

pytestmark = pytest.mark.e2e

BUCKET = "gkd-outage"
TERMINAL = ("succeeded", "failed", "cancelled")
_CKPT = re.compile(r"^checkpoints/stage1/stage1b-step(\d+)\.pt$")


@pytest.fixture
def seaweed(tmp_path: Path) -> Iterator[SeaweedS3]:
    """A SeaweedFS server of this test's own (the session one must stay up for other tests)."""
    server = start_seaweed(tmp_path / "weed")
    server.ensure_bucket(BUCKET)
    try:
        yield server
    finally:
        server.stop()


def _setup(
    tmp_path: Path, tiny_bench: Path, seaweed: SeaweedS3, *, outage_window_s: float
) -> tuple[WorkerContext, str, dict[str, str]]:
    """Settings for this process and the worker's environment, a team with datasets, and a queued job."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "allowed_roots": [tiny_bench],
        "storage_url": f"s3://{BUCKET}/outage-{secrets.token_hex(4)}",
        "s3_endpoint_url": seaweed.endpoint_url,
        "s3_access_key": seaweed.access_key,
        "s3_secret_key": seaweed.secret_key,
        "s3_region": seaweed.region,
        "heartbeat_interval_s": 1,
        "heartbeat_stale_s": 20,
        "outage_window_s": outage_window_s,
        "retry_backoff_base_s": 1,
        "retry_backoff_max_s": 4,
    }
    settings = Settings(**values)
    upgrade_database(settings)
    context = WorkerContext(settings)
    with context.session() as session:
        _, key = auth.create_api_key(session=session, team_name="vision")
        for domain in ("toon", "fog"):
            body = DatasetCreate(name=domain, layout="folder", uri=(tiny_bench / domain).as_uri())
            register_dataset(session=session, team_id=key.team_id, body=body, settings=settings)
        spec = JobSpec.model_validate(tiny_spec("outage", stage1_steps=20, checkpoint_every=5))
        job_id = jobs.create_job(session=session, team_id=key.team_id, spec=spec).id
    return context, job_id, gkd_env(**values)


def _stored_stage1_step(context: WorkerContext, job_id: str) -> int:
    try:
        raw = context.store.get_bytes(f"{checkpoint_prefix(job_id)}/manifest.json")
    except KeyError:
        return 0
    return max((int(m.group(1)) for rel in json.loads(raw)["files"] if (m := _CKPT.match(rel))), default=0)


def _finished(context: WorkerContext, job_id: str) -> str | None:
    with context.session() as session:
        status = jobs.get_job(session=session, job_id=job_id).status
    return status if status in TERMINAL else None


def _start_job(context: WorkerContext, job_id: str, env: dict[str, str], log: Path) -> WorkerProcess:
    worker = WorkerProcess(env, log, name="outage").start()
    enqueue_job(job_id, settings=context.settings)
    wait_for(
        lambda: _stored_stage1_step(context, job_id) >= 5,
        timeout_s=180,
        what=f"a stored stage-1 checkpoint\n{worker.tail()}",
    )
    return worker


def test_a_30_s_storage_outage_is_waited_out(
    tmp_path: Path, tiny_bench: Path, seaweed: SeaweedS3, worker_processes: list[WorkerProcess]
) -> None:
    context, job_id, env = _setup(tmp_path, tiny_bench, seaweed, outage_window_s=300)
    worker = _start_job(context, job_id, env, tmp_path / "logs" / "worker.log")
    worker_processes.append(worker)

    seaweed.stop()
    stopped_at = time.monotonic()
    time.sleep(30)
    seaweed.restart()
    down_s = time.monotonic() - stopped_at

    status = wait_for(lambda: _finished(context, job_id), timeout_s=300, what=f"the job\n{worker.tail()}")
    with context.session() as session:
        job = jobs.get_job(session=session, job_id=job_id)
        events = jobs.list_events(session=session, job_id=job_id)
        artifacts = jobs.list_artifacts(session=session, job_id=job_id)
    assert status == "succeeded", (job.error_reason, job.error_detail, worker.tail())
    assert job.attempt == 1  # the outage used no attempt
    waits = [e.message for e in events if e.type == "outage"]
    assert waits and "StorageUnavailable" in waits[0], [e.message for e in events]
    assert not [e for e in events if e.from_status == "running" and e.to_status == "queued"]  # never requeued
    assert {"student.safetensors", "student.onnx", "model_card.json"} <= {a.name for a in artifacts}
    for artifact in artifacts:
        blob = context.store.get_bytes(artifact.storage_key)
        assert hashlib.sha256(blob).hexdigest() == artifact.sha256
    print(f"\nstorage down {down_s:.0f} s mid-job: waited out, succeeded in attempt 1 ({waits[0][:90]}...)")


def test_a_storage_outage_longer_than_the_window_fails_the_job(
    tmp_path: Path, tiny_bench: Path, seaweed: SeaweedS3, worker_processes: list[WorkerProcess]
) -> None:
    context, job_id, env = _setup(tmp_path, tiny_bench, seaweed, outage_window_s=8)
    worker = _start_job(context, job_id, env, tmp_path / "logs" / "worker.log")
    worker_processes.append(worker)

    seaweed.stop()
    stopped_at = time.monotonic()
    status = wait_for(lambda: _finished(context, job_id), timeout_s=180, what=f"the job to fail\n{worker.tail()}")
    failed_after_s = time.monotonic() - stopped_at
    seaweed.restart()  # to look at what was stored

    with context.session() as session:
        job = jobs.get_job(session=session, job_id=job_id)
        artifacts = jobs.list_artifacts(session=session, job_id=job_id)
    assert (status, job.error_reason, job.attempt) == ("failed", "infra", 1), (job.error_detail, worker.tail())
    detail = job.error_detail or ""
    assert "GKD_OUTAGE_WINDOW_S=8" in detail and "StorageUnavailable" in detail, detail
    assert artifacts == []  # no partial artifact is listed as complete
    assert context.store.list(f"jobs/{job_id}/artifacts/") == []
    assert failed_after_s < 120, failed_after_s
    print(f"\nstorage down past an 8 s window: failed after {failed_after_s:.0f} s: {detail[:160]}")

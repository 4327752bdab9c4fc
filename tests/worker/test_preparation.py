"""The attempt beats from its claim to its end: a long download of a big s3:// set before training is not
mistaken for a dead worker, and a cancel during it stops the download; an attempt that lost the job while it
finished never records results over the attempt that owns it now."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from service import jobs
from service.models import JobStatus
from service.uris import UriResolver
from tests.support.worker_env import tiny_spec
from tests.worker.test_pipeline import Env, make_env
from worker.pipeline import JobRun, run_job


def _heartbeat(env: Env, job_id: str) -> datetime | None:
    with env.context.session() as session:
        return jobs.get_job(session=session, job_id=job_id).heartbeat_at


def test_a_long_download_keeps_beating_and_a_cancel_during_it_stops_the_job(
    tmp_path: Path, tiny_bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(tmp_path, tiny_bench, heartbeat_interval_s=0.05)
    job_id = env.submit(tiny_spec("big-download"))
    seen: list[datetime | None] = []
    downloaded = {"objects": 0}

    def slow_resolve(self: UriResolver, uri: str, *, on_file: Callable[[], None] | None = None) -> Path:
        """Objects of a big prefix arriving one by one, until the attempt says stop."""
        assert on_file is not None, "the worker must be able to stop a download"
        deadline = time.monotonic() + 20
        while True:
            on_file()
            downloaded["objects"] += 1
            seen.append(_heartbeat(env, job_id))
            if len(set(seen)) == 4:  # three beats during the download: now the user cancels
                with env.context.session() as session:
                    jobs.request_cancel(session=session, job_id=job_id)
            assert time.monotonic() < deadline, "the download was never stopped"
            time.sleep(0.02)

    monkeypatch.setattr(UriResolver, "resolve", slow_resolve)
    started = time.monotonic()
    run_job(job_id, context=env.context)
    assert time.monotonic() - started < 15
    job = env.job(job_id)
    assert (job.status, job.attempt) == (JobStatus.CANCELLED.value, 1), (job.status, job.error_detail)
    assert len({beat for beat in seen if beat is not None}) >= 3, "no heartbeat while downloading"
    messages = [event.message for event in env.events(job_id)]
    assert not any("training on" in message for message in messages), messages


def test_an_attempt_that_lost_the_job_records_nothing(tmp_path: Path, tiny_bench: Path) -> None:
    env = make_env(tmp_path, tiny_bench)
    job_id = env.submit(tiny_spec("taken-over"))
    with env.context.session() as session:
        first = jobs.claim_job(session=session, job_id=job_id, worker="first")
        assert first is not None
        session.expunge(first)
    old = JobRun(env.context, first, "first")
    with env.context.session() as session:  # swept as dead, then claimed by another worker
        jobs.LIFECYCLE.requeue(session=session, row_id=job_id, spend_attempt=True, message="stale")
        assert jobs.claim_job(session=session, job_id=job_id, worker="second") is not None
    old.work_dir.mkdir(parents=True)
    summary: dict[str, Any] = {"target_average": 0.5}
    old._publish({}, summary)
    job = env.job(job_id)
    assert (job.status, job.attempt, job.summary) == (JobStatus.RUNNING.value, 2, None)


def test_a_shutdown_during_preparation_hands_the_job_back(
    tmp_path: Path, tiny_bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import shutdown

    env = make_env(tmp_path, tiny_bench, heartbeat_interval_s=0.05)
    job_id = env.submit(tiny_spec("handoff-while-downloading"))
    asked = threading.Event()

    def resolve_until_shutdown(self: UriResolver, uri: str, *, on_file: Callable[[], None] | None = None) -> Path:
        assert on_file is not None
        shutdown.request()
        asked.set()
        on_file()  # raises: the worker is stopping
        raise AssertionError("on_file did not stop the download")

    monkeypatch.setattr(UriResolver, "resolve", resolve_until_shutdown)
    try:
        run_job(job_id, context=env.context)
    finally:
        shutdown.reset()
    assert asked.is_set()
    job = env.job(job_id)
    assert (job.status, job.attempt) == (JobStatus.QUEUED.value, 0), (job.status, job.error_detail)


def test_a_spec_this_worker_cannot_read_is_an_infra_fault_not_the_users(tmp_path: Path, tiny_bench: Path) -> None:
    """A newer API accepted a field this worker does not know: the job goes back for another (upgraded)
    worker instead of failing as the user's mistake."""
    from sqlalchemy import update

    from service.models import Job

    env = make_env(tmp_path, tiny_bench)
    job_id = env.submit(tiny_spec("from-a-newer-api"))
    with env.context.session() as session:
        spec = {**jobs.get_job(session=session, job_id=job_id).spec, "stage3": {"steps": 5}}
        session.execute(update(Job).where(Job.id == job_id).values(spec=spec))
    run_job(job_id, context=env.context)
    job = env.job(job_id)
    assert (job.status, job.attempt, job.error_reason) == (JobStatus.QUEUED.value, 1, None), job.error_detail
    messages = " ".join(event.message for event in env.events(job_id))
    assert "cannot read job" in messages and "stage3" in messages and "upgrade the workers" in messages

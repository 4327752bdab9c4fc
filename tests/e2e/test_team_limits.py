"""A team at its running-jobs limit: with two real workers free, its second job waits in queued with the
reason shown by the API, and starts as soon as the first one ends (not at the sweeper's next re-send).

Embedded-style services (SQLite database, kombu's SQLAlchemy broker, local artifacts) with two real Celery
workers configured only through GKD_* variables, GKD_TEAM_MAX_RUNNING_JOBS=1.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from service import auth, jobs
from service.datasets import register_dataset
from service.db import upgrade_database
from service.queue import enqueue_job
from service.schemas import DatasetCreate, JobSpec
from service.settings import Settings
from tests.support.worker_env import WorkerProcess, gkd_env, tiny_spec, wait_for
from worker.context import WorkerContext

pytestmark = pytest.mark.e2e

REASON = "waiting: team at its limit of 1 running job"
SWEEPER_RESEND_S = 120.0  # the sweeper re-sends jobs queued longer than this; the wake-up must beat it


def test_second_job_waits_with_its_reason_then_runs(
    tmp_path: Path, tiny_bench: Path, worker_processes: list[WorkerProcess]
) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, allowed_roots=[tiny_bench], team_max_running_jobs=1, heartbeat_interval_s=1)
    upgrade_database(settings)
    context = WorkerContext(settings)
    with context.session() as session:
        key, row = auth.create_api_key(session=session, team_name="vision")
        for domain in ("toon", "fog"):
            body = DatasetCreate(name=domain, layout="folder", uri=(tiny_bench / domain).as_uri())
            register_dataset(session=session, team_id=row.team_id, body=body, settings=settings)
        first = jobs.create_job(
            session=session, team_id=row.team_id, spec=JobSpec.model_validate(tiny_spec("first", stage1_steps=40))
        ).id
        second = jobs.create_job(
            session=session, team_id=row.team_id, spec=JobSpec.model_validate(tiny_spec("second"))
        ).id
    env = gkd_env(data_dir=data, allowed_roots=[tiny_bench], team_max_running_jobs=1, heartbeat_interval_s=1)
    workers: list[WorkerProcess] = []
    for name in ("w1", "w2"):  # one after the other: kombu's SQLAlchemy transport races creating its queue row
        workers.append(WorkerProcess(env, tmp_path / "logs" / f"{name}.log", name=name).start())
        worker_processes.append(workers[-1])
        workers[-1].wait_ready(timeout_s=120)

    def tails() -> str:
        return "\n".join(worker.tail(15) for worker in workers)

    app = create_app(settings)
    with TestClient(app) as api:
        headers = {"Authorization": f"Bearer {key}"}

        def read(job_id: str) -> dict[str, Any]:
            body: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", headers=headers).raise_for_status().json()
            return body

        enqueue_job(first, settings=settings)
        wait_for(lambda: read(first)["status"] == "running", timeout_s=60, what=f"the first job to start\n{tails()}")
        enqueue_job(second, settings=settings)  # the idle worker takes it, and the team limit holds it back
        held = wait_for(
            lambda: (job := read(second))["waiting_reason"] and job,
            timeout_s=60,
            what=f"the second job to be held back\n{tails()}",
        )
        assert held["status"] == "queued" and held["waiting_reason"] == REASON and held["error"] is None
        assert read(first)["status"] == "running"

        def finished(job_id: str) -> dict[str, Any] | None:
            job = read(job_id)
            return job if job["status"] in ("succeeded", "failed", "cancelled") else None

        done = wait_for(lambda: finished(first), timeout_s=240, what=f"the first job\n{tails()}", interval_s=0.5)
        assert done["status"] == "succeeded", done
        ran = wait_for(lambda: finished(second), timeout_s=240, what=f"the second job\n{tails()}", interval_s=0.5)
        assert ran["status"] == "succeeded" and ran["waiting_reason"] is None, ran
        events = api.get(f"/v1/jobs/{second}/events", headers=headers).json()["items"]
    app.state.engine.dispose()

    kinds = [(e["type"], e["to_status"]) for e in events]
    assert kinds.index(("waiting", None)) < kinds.index(("transition", "running")), kinds
    assert [e["message"] for e in events if e["type"] == "waiting"] == [REASON]
    claimed = next(e for e in events if e["to_status"] == "running")
    delay = (datetime.fromisoformat(claimed["time"]) - datetime.fromisoformat(done["finished_at"])).total_seconds()
    assert 0 <= delay < SWEEPER_RESEND_S / 4, f"the second job started {delay:.1f} s after the first ended"
    print(f"\nteam limit: second job waited, then started {delay:.2f} s after the first finished")

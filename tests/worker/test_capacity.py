"""Workers advertise per queue how many ranks a job may run on them; the API and the worker act on it.

A real SQLite database (migrated), the worker's Advertiser, and the API app over the same settings:
a job whose queue has live workers, none of them big enough, is a 422 naming the queues and sizes;
batches that do not split over the ranks are 422s too; a worker that still receives a job too big
for it hands it back when a bigger live worker exists on the queue.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import update

from api.main import create_app
from service import auth, capacity
from service.models import JobStatus, WorkerSlots, utcnow
from tests.support.worker_env import tiny_spec
from tests.worker.test_pipeline import Env, make_env
from worker.capacity import Advertiser, Slots, local_slots
from worker.pipeline import run_job


class _Enqueuer:
    def __init__(self) -> None:
        self.jobs: list[str] = []

    def enqueue_job(self, job_id: str, queue: str = "gpu") -> None:
        self.jobs.append(job_id)

    def enqueue_evaluation(self, evaluation_id: str, queue: str = "gpu") -> None:
        raise AssertionError("no evaluations here")


def _spec(gpus: int, **changes: Any) -> dict[str, Any]:
    return tiny_spec("sized", resources={"queue": "gpu", "gpus": gpus}, **changes)


def _errors(response: Any) -> dict[str, str]:
    assert response.status_code == 422, response.text
    return {e["field"]: e["message"] for e in response.json()["errors"]}


def test_the_api_refuses_what_no_live_worker_of_the_queue_can_hold(tmp_path: Path, tiny_bench: Path) -> None:
    env = make_env(tmp_path, tiny_bench, worker_cpu_ranks=2)
    assert local_slots(env.context.settings) == Slots(2, "cpu")
    with env.context.session() as session:
        key, _ = auth.create_api_key(session=session, team_name="vision")
    app = create_app(env.context.settings, enqueuer=_Enqueuer())
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(app) as client:
        # No worker has advertised yet: the job is taken and waits for one.
        assert client.post("/v1/jobs", json=_spec(4, stage2={"steps": 4, "batch_size": 4, "crop_size": 32}),
                           headers=headers).status_code == 201  # fmt: skip

        advertiser = Advertiser(env.context, "w1@host", ["gpu", "cpu-small"]).start()
        try:
            assert client.post("/v1/jobs", json=_spec(2), headers=headers).status_code == 201
            errors = _errors(client.post("/v1/jobs", json=_spec(4), headers=headers))
            assert errors["resources.gpus"] == (
                "no live worker on queue 'gpu' can run 4 ranks; live workers per queue: "
                "cpu-small: 2 CPU ranks (w1@host); gpu: 2 CPU ranks (w1@host)"
            )
            assert set(errors) == {"resources.gpus", "stage2.batch_size"}  # 2 images do not split over 4 ranks

            errors = _errors(client.post("/v1/jobs", json=_spec(3), headers=headers))
            assert "the global batch of 4 does not split evenly over resources.gpus=3" in errors["stage1.batch_size"]
            assert "use 3 or 6" in client.post("/v1/jobs", json=_spec(3), headers=headers).json()["errors"][0]["fix"]

            # A worker that stops advertising (its host is gone) no longer counts.
            with env.context.session() as session:
                session.execute(update(WorkerSlots).values(seen_at=utcnow() - timedelta(hours=1)))
                assert capacity.live_slots(session=session, stale_s=env.context.settings.capacity_stale_s) == {}
            advertiser.advertise()
        finally:
            advertiser.stop()
        with env.context.session() as session:  # a clean shutdown withdraws the rows
            assert capacity.live_slots(session=session, stale_s=3600) == {}
        big = _spec(4, stage2={"steps": 4, "batch_size": 4, "crop_size": 32})
        assert client.post("/v1/jobs", json=big, headers=headers).status_code == 201


def test_a_worker_too_small_hands_the_job_back_when_a_bigger_one_is_live(tmp_path: Path, tiny_bench: Path) -> None:
    env: Env = make_env(tmp_path, tiny_bench, worker_cpu_ranks=1)
    with env.context.session() as session:
        capacity.advertise(session=session, worker="big@gpu-host", queues=["gpu"], slots=8, device="cuda")
    job_id = env.submit(_spec(2))
    run_job(job_id, context=env.context)
    job = env.job(job_id)
    assert (job.status, job.attempt) == (JobStatus.QUEUED.value, 0), job.error_detail
    assert "handed back for big@gpu-host" in env.events(job_id)[-1].message

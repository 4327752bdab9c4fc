"""An evaluation lives a job's life: SIGKILL its worker mid-evaluation and another worker reruns it; cancel one
that is running and it stops before its next target.

Embedded-style services (SQLite, kombu's SQLAlchemy broker, local artifacts) and real Celery workers
configured through GKD_* variables, as in test_kill_resume.py. The evaluation target is a bigger
synthetic domain than the tiny benchmark's, so that scoring it takes long enough to be interrupted.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from service import auth, evaluations, jobs
from service.datasets import register_dataset
from service.db import upgrade_database
from service.models import Evaluation
from service.queue import enqueue_evaluation, enqueue_job
from service.schemas import DataRef, DatasetCreate, JobSpec
from service.settings import Settings
from tests.support.worker_env import WorkerProcess, gkd_env, tiny_spec, wait_for
from worker.context import WorkerContext

pytestmark = pytest.mark.e2e

TERMINAL = ("succeeded", "failed", "cancelled")
BIG_IMAGES = 16


def _big_domain(out: Path) -> Path:
    """One target domain with BIG_IMAGES val images of 64 px (the tiny student scores it window by window)."""
    import gkd_core  # noqa: F401  (torchvision shim before anything imports timm)
    from gkd_core.data import BenchmarkSizes, generate_benchmark

    sizes = BenchmarkSizes(source_train=0, source_val=0, target_val=BIG_IMAGES, pool_train=0, pool_val=0)
    generate_benchmark(out, seed=1, size=64, sizes=sizes, domains=["retro"])
    return out / "retro"


def _evaluation(context: WorkerContext, evaluation_id: str) -> Evaluation:
    with context.session() as session:
        evaluation = evaluations.get_evaluation(session=session, evaluation_id=evaluation_id)
        session.expunge(evaluation)
        return evaluation


def _terminal(context: WorkerContext, evaluation_id: str) -> Evaluation | None:
    evaluation = _evaluation(context, evaluation_id)
    return evaluation if evaluation.status in TERMINAL else None


def test_a_killed_evaluation_reruns_and_a_cancelled_one_stops(
    tmp_path: Path, tiny_bench: Path, worker_processes: list[WorkerProcess]
) -> None:
    big = _big_domain(tmp_path / "big")
    data = tmp_path / "data"
    roots = [tiny_bench, big]
    settings = Settings(data_dir=data, allowed_roots=roots, heartbeat_interval_s=1, heartbeat_stale_s=5)
    upgrade_database(settings)
    context = WorkerContext(settings)
    with context.session() as session:
        _, key = auth.create_api_key(session=session, team_name="vision")
        team_id = key.team_id
        for name, root in (("toon", tiny_bench / "toon"), ("fog", tiny_bench / "fog"), ("big", big)):
            body = DatasetCreate(name=name, layout="folder", uri=root.as_uri())
            dataset, _ = register_dataset(session=session, team_id=team_id, body=body, settings=settings)
            assert dataset.status == "valid", dataset.report
        job_id = jobs.create_job(session=session, team_id=team_id, spec=JobSpec.model_validate(tiny_spec("eval"))).id
    env = gkd_env(data_dir=data, allowed_roots=roots, heartbeat_interval_s=1, heartbeat_stale_s=5)
    first = WorkerProcess(env, tmp_path / "logs" / "worker-1.log", name="first").start()
    worker_processes.append(first)
    enqueue_job(job_id, settings=settings)

    def job_done() -> str | None:
        with context.session() as session:
            status = jobs.get_job(session=session, job_id=job_id).status
        return status if status in TERMINAL else None

    assert wait_for(job_done, timeout_s=240, what=f"the job\n{first.tail()}", interval_s=0.5) == "succeeded"

    # 1. SIGKILL the worker while it scores the evaluation: the next worker runs it again.
    with context.session() as session:
        job = jobs.get_job(session=session, job_id=job_id)
        evaluation_id = evaluations.create_evaluation(
            session=session, job=job, targets=[DataRef(dataset="big", split="val")], max_attempts=3
        ).id
    enqueue_evaluation(evaluation_id, settings=settings)
    wait_for(
        lambda: _evaluation(context, evaluation_id).status == "running",
        timeout_s=60,
        what=f"the evaluation to start\n{first.tail()}",
        interval_s=0.05,
    )
    time.sleep(1.0)  # into the scoring, past the student's download
    first.kill_group()
    killed = _evaluation(context, evaluation_id)
    assert (killed.status, killed.attempt) == ("running", 1), (killed.status, killed.error)

    second = WorkerProcess(env, tmp_path / "logs" / "worker-2.log", name="second").start()
    worker_processes.append(second)
    started = time.monotonic()
    done = wait_for(
        lambda: _terminal(context, evaluation_id),
        timeout_s=180,
        what=f"the rerun evaluation\n{second.tail()}",
        interval_s=0.5,
    )
    rerun_s = time.monotonic() - started
    assert (done.status, done.attempt) == ("succeeded", 2), (done.status, done.error, second.tail())
    scores = (done.results or {})["big/val"]
    assert scores["images"] == BIG_IMAGES and 0.0 <= scores["miou"] <= 1.0

    # 2. Cancel a running evaluation: it stops before its next target and ends cancelled.
    with context.session() as session:
        job = jobs.get_job(session=session, job_id=job_id)
        cancel_id = evaluations.create_evaluation(
            session=session,
            job=job,
            targets=[DataRef(dataset="big", split="val"), DataRef(dataset="fog", split="val")],
        ).id
    enqueue_evaluation(cancel_id, settings=settings)
    wait_for(
        lambda: _evaluation(context, cancel_id).status == "running",
        timeout_s=60,
        what=f"the second evaluation to start\n{second.tail()}",
        interval_s=0.05,
    )
    with context.session() as session:
        assert evaluations.request_cancel(session=session, evaluation_id=cancel_id).status == "cancelling"
    cancelled = wait_for(
        lambda: _terminal(context, cancel_id), timeout_s=120, what=f"the cancel\n{second.tail()}", interval_s=0.5
    )
    assert cancelled.status == "cancelled" and cancelled.results is None, (cancelled.status, cancelled.error)
    print(f"\nevaluation: killed at attempt 1, rerun and succeeded in {rerun_s:.1f} s after the kill; cancel honoured")

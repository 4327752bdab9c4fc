"""SIGKILL a real Celery worker in the middle of stage 1; a new worker resumes the job from its checkpoint.

Embedded-style services (SQLite database, kombu's SQLAlchemy broker over SQLite, local artifact
folder), but real worker processes configured only through GKD_* variables. The job and both workers
are on a queue other than the default one ("a100"). The killed worker's message is never acknowledged
and its heartbeat stops; the second worker's sweeper sees the stale heartbeat, requeues the job to its
own queue, and the worker there resumes from the last checkpoint stored in storage. The claim events
name each worker by its Celery node name and the attempt it started.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import pytest

from service import auth, jobs
from service.datasets import register_dataset
from service.db import upgrade_database
from service.queue import enqueue_job
from service.schemas import DatasetCreate, JobSpec
from service.settings import Settings
from tests.support.worker_env import WorkerProcess, gkd_env, tiny_spec, wait_for
from worker.context import WorkerContext
from worker.work_dir_sync import checkpoint_prefix

pytestmark = pytest.mark.e2e

QUEUE = "a100"  # not the default queue: the requeued job must come back here
# Long enough that the kill lands mid-stage on a fast machine too: the tiny model's steps take about
# 10 ms on a 2-core AMD EPYC build machine, where 30 steps ended before the poll saw step 12.
STEPS = 300
CHECKPOINT_EVERY = 5
KILL_AFTER_STEP = 10
_CKPT = re.compile(r"^checkpoints/stage1/stage1b-step(\d+)\.pt$")


def _stored_stage1_steps(context: WorkerContext, job_id: str) -> list[int]:
    """Steps of the stage-1 checkpoints the stored manifest names (what a new attempt can resume from)."""
    try:
        raw = context.store.get_bytes(f"{checkpoint_prefix(job_id)}/manifest.json")
    except KeyError:
        return []
    names = json.loads(raw)["files"]
    return sorted(int(m.group(1)) for rel in names if (m := _CKPT.match(rel)))


def _max_step(context: WorkerContext, job_id: str, stage: str) -> int:
    with context.session() as session:
        return max((m.step for m in jobs.list_metrics(session=session, job_id=job_id) if m.stage == stage), default=0)


def test_sigkill_mid_stage1_then_resume(
    tmp_path: Path, tiny_bench: Path, worker_processes: list[WorkerProcess]
) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, allowed_roots=[tiny_bench], heartbeat_interval_s=1, heartbeat_stale_s=5)
    upgrade_database(settings)
    context = WorkerContext(settings)
    with context.session() as session:
        _, key = auth.create_api_key(session=session, team_name="vision")
        for domain in ("toon", "fog"):
            body = DatasetCreate(name=domain, layout="folder", uri=(tiny_bench / domain).as_uri())
            register_dataset(session=session, team_id=key.team_id, body=body, settings=settings)
        job_id = jobs.create_job(
            session=session,
            team_id=key.team_id,
            spec=JobSpec.model_validate(
                tiny_spec(
                    "kill", stage1_steps=STEPS, checkpoint_every=CHECKPOINT_EVERY, resources={"queue": QUEUE, "gpus": 1}
                )
            ),
        ).id
    env = gkd_env(
        data_dir=data, allowed_roots=[tiny_bench], heartbeat_interval_s=1, heartbeat_stale_s=5, queues=["gpu", QUEUE]
    )
    first = WorkerProcess(env, tmp_path / "logs" / "worker-1.log", name="first", queues=QUEUE).start()
    worker_processes.append(first)
    enqueue_job(job_id, queue=QUEUE, settings=settings)
    started = time.monotonic()

    wait_for(
        lambda: (
            _max_step(context, job_id, "stage1b") >= KILL_AFTER_STEP + 2
            and max(_stored_stage1_steps(context, job_id), default=0) >= KILL_AFTER_STEP
        ),
        timeout_s=120,
        what=f"stage 1 past step {KILL_AFTER_STEP} with a stored checkpoint\n{first.tail()}",
        interval_s=0.02,
    )
    first.kill_group()
    killed_at = time.monotonic()
    step_at_kill = _max_step(context, job_id, "stage1b")
    stored = max(_stored_stage1_steps(context, job_id))
    with context.session() as session:
        job = jobs.get_job(session=session, job_id=job_id)
        assert (job.status, job.attempt) == ("running", 1)  # the database does not know yet
    assert stored < STEPS

    second = WorkerProcess(env, tmp_path / "logs" / "worker-2.log", name="second", queues=QUEUE).start()
    worker_processes.append(second)

    def finished() -> str | None:
        with context.session() as session:
            status = jobs.get_job(session=session, job_id=job_id).status
        return status if status in ("succeeded", "failed", "cancelled") else None

    status = wait_for(finished, timeout_s=240, what=f"the resumed job to finish\n{second.tail()}", interval_s=0.5)
    done_at = time.monotonic()

    with context.session() as session:
        job = jobs.get_job(session=session, job_id=job_id)
        events = jobs.list_events(session=session, job_id=job_id)
        metrics = jobs.list_metrics(session=session, job_id=job_id)
        artifacts = jobs.list_artifacts(session=session, job_id=job_id)
    assert status == "succeeded", (job.error_reason, job.error_detail, second.tail())
    assert job.attempt == 2

    messages = [e.message for e in events]
    requeue = [e for e in events if "worker lost" in e.message and e.to_status == "queued"]
    assert requeue, messages
    claims = [(e.message, e.attempt) for e in events if e.to_status == "running"]
    assert claims == [
        (f"claimed by {first.node_name}: attempt 1 of 3", 1),
        (f"claimed by {second.node_name}: attempt 2 of 3", 2),  # the second worker reads only queue a100
    ], claims
    resumed = [int(m.group(1)) for msg in messages if (m := re.search(r"stage1b: resumed from step (\d+)", msg))]
    assert resumed == [stored], (stored, messages)
    assert 0 < resumed[0] < STEPS
    resumed_event = next(e for e in events if "resumed from step" in e.message)
    assert resumed_event.attempt == 2

    steps: dict[str, set[int]] = {}
    for row in metrics:
        steps.setdefault(row.stage, set()).add(row.step)
    assert steps["stage1b"] == set(range(1, STEPS + 1)), sorted(steps["stage1b"])
    assert steps["stage2"] == set(range(1, 5)) and steps["ref_student_frozen"] == set(range(1, 5))
    assert {(r.stage, r.step) for r in metrics if r.name == "loss" and r.stage == "stage1b"} >= {
        ("stage1b", s) for s in range(resumed[0] + 1, STEPS + 1)
    }

    names = {a.name: a for a in artifacts}
    assert set(names) == {"student.safetensors", "student.onnx", "model_card.json", "README.md", "tensorboard.tar.gz",
                          "report.json", "report.png"}
    for artifact in artifacts:
        blob = context.store.get_bytes(artifact.storage_key)
        assert hashlib.sha256(blob).hexdigest() == artifact.sha256 and len(blob) == artifact.size
    summary = job.summary or {}
    assert "fog/val" in summary["student"] and "fog/val" in summary["references"]["student_frozen"]

    requeued_after = (requeue[0].time - events[0].time).total_seconds()
    print(
        f"\nkill/resume: killed at stage1 step {step_at_kill} ({killed_at - started:.1f} s after enqueue), "
        f"stored checkpoint step {stored}, resumed from step {resumed[0]}, "
        f"requeued {requeued_after:.1f} s after creation, finished {done_at - killed_at:.1f} s after the kill"
    )

"""Graceful handoff: a worker asked to stop checkpoints its running job and puts it back in the queue."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from service import evaluations, jobs
from service.models import JobStatus
from service.schemas import DataRef
from tests.support.worker_env import tiny_spec
from tests.worker.test_pipeline import Env, make_env, sent_messages
from worker import shutdown
from worker.evaluation import STUDENT_ARTIFACT, run_evaluation
from worker.pipeline import run_job


@pytest.fixture
def env(tmp_path: Path, tiny_bench: Path) -> Iterator[Env]:
    shutdown.reset()
    yield make_env(tmp_path, tiny_bench)
    shutdown.reset()


def test_shutdown_requeues_the_job_and_the_next_attempt_resumes(env: Env) -> None:
    job_id = env.submit(tiny_spec("handoff", stage1_steps=60, checkpoint_every=3))
    runner = threading.Thread(target=run_job, args=(job_id,), kwargs={"context": env.context}, daemon=True)
    runner.start()
    deadline = time.monotonic() + 90
    while max(env.metric_steps(job_id).get("stage1b", {0})) < 4:
        assert runner.is_alive() and time.monotonic() < deadline, env.job(job_id).error_detail
        time.sleep(0.1)
    shutdown.request()
    asked = time.monotonic()
    runner.join(timeout=30)
    assert not runner.is_alive(), "run_job did not return after the shutdown request"
    assert time.monotonic() - asked < 20  # polling, checkpoint, teardown and push on a slow machine

    job = env.job(job_id)
    assert job.status == JobStatus.QUEUED.value
    assert job.attempt == 0, "a handoff must not use up an attempt"
    messages = [e.message for e in env.events(job_id)]
    assert any(m.startswith("worker ") and "shutting down: checkpoint stored" in m for m in messages), messages
    stored = [rel for rel in env.manifest(job_id) if rel.startswith("checkpoints/stage1/") and rel.endswith(".pt")]
    assert stored, env.manifest(job_id)

    shutdown.reset()
    run_job(job_id, context=env.context)
    job = env.job(job_id)
    assert job.status == JobStatus.SUCCEEDED.value, job.error_detail
    assert job.attempt == 1
    messages = [e.message for e in env.events(job_id)]
    resumed = [m for m in messages if "resumed from step" in m]
    assert resumed and "resumed from step 0" not in resumed[0], messages
    assert env.metric_steps(job_id)["stage1b"] == set(range(1, 61))


def test_notify_children_reaches_a_pool_process() -> None:
    """A forked child sees its parent's handoff marker; the marker is the parent's, not global."""
    script = textwrap.dedent(
        """
        import subprocess, sys
        from worker import shutdown
        shutdown.clear_marker()
        child = subprocess.Popen([sys.executable, "-c", '''
        import time
        from worker import shutdown
        print("ready", flush=True)
        deadline = time.monotonic() + 20
        while not shutdown.requested() and time.monotonic() < deadline:
            time.sleep(0.05)
        raise SystemExit(0 if shutdown.requested() else 3)
        '''], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "ready"
        assert not shutdown.requested(), "the parent itself was not asked to hand anything back"
        marker = shutdown.notify_children()
        code = child.wait(timeout=20)
        shutdown.clear_marker()
        assert not marker.exists()
        raise SystemExit(code)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_shutdown_hands_a_running_evaluation_back_without_using_an_attempt(env: Env) -> None:
    job_id = env.submit(tiny_spec("evaluated"))
    student = Path(env.context.settings.data_dir) / STUDENT_ARTIFACT
    student.write_bytes(b"not read: the worker stops before scoring")
    stored = env.context.store.put_file(f"jobs/{job_id}/artifacts/{STUDENT_ARTIFACT}", student)
    with env.context.session() as session:
        assert jobs.claim_job(session=session, job_id=job_id, worker="w@host") is not None
        jobs.add_artifact(
            session=session, job_id=job_id, name=STUDENT_ARTIFACT, kind="student", size=stored.size,
            sha256=stored.sha256, storage_key=stored.key,
        )  # fmt: skip
        jobs.finish(session=session, job_id=job_id, status="succeeded")
        job = jobs.get_job(session=session, job_id=job_id)
        evaluation_id = evaluations.create_evaluation(
            session=session, job=job, targets=[DataRef(dataset="fog", split="val")]
        ).id

    shutdown.request()  # the worker is shutting down before the first target is scored
    run_evaluation(evaluation_id, context=env.context, worker="w@host")

    with env.context.session() as session:
        evaluation = evaluations.get_evaluation(session=session, evaluation_id=evaluation_id)
        assert (evaluation.status, evaluation.attempt, evaluation.results) == ("queued", 0, None)
    assert [queue for queue, payload in sent_messages(env) if evaluation_id in payload] == ["gpu"]

"""Jobs that ask for several ranks: torchrun gloo ranks under run_job, on the tiny benchmark.

As in test_pipeline.py, run_job runs in this process exactly as the Celery task would (this machine
has no GPU, so each rank is a gloo CPU process); faults are real: a rank is SIGKILLed, the clock runs
past max_runtime_s, a worker offers fewer ranks than asked for.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from service import jobs
from service.models import Job, JobEvent, JobStatus, utcnow
from tests.support.worker_env import process_tree, tiny_spec, wait_for
from tests.worker.test_pipeline import Env, make_env
from worker.pipeline import run_job

RANKS = {"queue": "gpu", "gpus": 2, "precision": "fp32", "max_runtime_s": 3600}
# Stage 2 at a global batch of 4: 2 images per rank (the FPN head's pooled branch has BatchNorm, which
# needs more than one image per rank on CPU ranks, where PyTorch has no SyncBatchNorm).
STAGE2 = {"steps": 4, "batch_size": 4, "crop_size": 32, "head": "fpn", "checkpoint_every": 2}


@pytest.fixture
def env(tmp_path: Path, tiny_bench: Path) -> Env:
    return make_env(tmp_path, tiny_bench)


def _rank_pids() -> dict[int, int]:
    """RANK -> pid of the training ranks started from this process (not their forked loader workers,
    which carry the same command line and RANK)."""
    found, ranks = {}, set()
    candidates = []
    for pid in process_tree(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"worker.rank_main" in cmdline:
            rank = next((int(v[5:]) for v in environ if v.startswith(b"RANK=")), None)
            if rank is not None:
                ranks.add(pid)
                candidates.append((pid, parent, rank))
    for pid, parent, rank in candidates:
        if parent not in ranks:
            found[rank] = pid
    return found


def _stored_stage1_steps(env: Env, job_id: str) -> list[int]:
    try:
        names = env.manifest(job_id)
    except KeyError:
        return []
    return sorted(int(m.group(1)) for rel in names if (m := re.search(r"stage1b-step(\d+)\.pt$", rel)))


def test_a_killed_rank_ends_the_attempt_and_the_next_resumes_on_two_ranks(env: Env) -> None:
    steps = 120
    job_id = env.submit(tiny_spec("ddp-kill", stage1_steps=steps, checkpoint_every=5, resources=RANKS, stage2=STAGE2))
    runner = threading.Thread(target=run_job, args=(job_id,), kwargs={"context": env.context}, daemon=True)
    runner.start()
    wait_for(
        lambda: max(_stored_stage1_steps(env, job_id), default=0) >= 5 and len(_rank_pids()) == 2,
        timeout_s=180, what=f"a stored stage-1 checkpoint of job {job_id}: {env.job(job_id).error_detail}",
    )  # fmt: skip
    os.kill(_rank_pids()[1], signal.SIGKILL)
    runner.join(timeout=60)
    assert not runner.is_alive(), "run_job did not return after a rank died"
    job = env.job(job_id)
    assert (job.status, job.attempt) == (JobStatus.QUEUED.value, 1), (job.status, job.error_detail)
    messages = [e.message for e in env.events(job_id)]
    assert any("training on 2 ranks (torchrun --standalone --nproc-per-node 2; gloo" in m for m in messages)
    assert any("2 ranks joined (gloo on cpu)" in m for m in messages), messages
    assert any("infrastructure error: RankLost" in m for m in messages), messages
    stored = max(_stored_stage1_steps(env, job_id))

    run_job(job_id, context=env.context)  # the requeued message, delivered again
    job = env.job(job_id)
    assert job.status == JobStatus.SUCCEEDED.value, job.error_detail
    assert job.attempt == 2 and job.summary and "fog/val" in job.summary["student"]
    messages = [e.message for e in env.events(job_id)]
    resumed = [int(m.group(1)) for msg in messages if (m := re.search(r"stage1b: resumed from step (\d+)", msg))]
    assert resumed == [stored] and 0 < stored < steps, (stored, messages)
    assert sum("training on 2 ranks" in m for m in messages) == 2
    metric_steps = env.metric_steps(job_id)
    assert metric_steps["stage1b"] == set(range(1, steps + 1))
    assert metric_steps["stage2"] == set(range(1, 5))
    assert not _rank_pids(), "ranks outlived their job"


def test_max_runtime_stops_every_rank_at_a_checkpoint_and_fails_naming_the_limit(env: Env) -> None:
    limit = 60
    resources = {**RANKS, "max_runtime_s": limit}
    # Method none: one long segmentation stage (no timm RandAugment, whose posterize can fail on a rare
    # sample: how far training gets before the limit depends on this machine's speed).
    long_stage2 = {**STAGE2, "steps": 5000, "checkpoint_every": 10}
    spec = tiny_spec("ddp-time", method="none", stage2=long_stage2, resources=resources, references=[])
    job_id = env.submit(spec)
    # An earlier attempt already ran for limit - 25 s (then went back to the queue, as after a handoff).
    with env.context.session() as session:
        jobs.claim_job(session=session, job_id=job_id, worker="earlier")
        jobs.transition(session=session, job_id=job_id, to=JobStatus.QUEUED, expected_from=JobStatus.RUNNING,
                        values={"attempt": Job.attempt - 1})  # fmt: skip
        session.execute(
            update(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.to_status == JobStatus.RUNNING.value)
            .values(time=utcnow() - timedelta(seconds=limit - 25))
        )
    started = time.monotonic()
    run_job(job_id, context=env.context)
    took = time.monotonic() - started

    job = env.job(job_id)
    assert (job.status, job.error_reason) == (JobStatus.FAILED.value, "user"), (job.status, job.error_detail)
    assert job.error_detail is not None and f"resources.max_runtime_s={limit} reached" in job.error_detail
    assert took < 60, f"the limit was enforced {took:.0f} s after the start"
    messages = [e.message for e in env.events(job_id)]
    assert any("stage2: stopped on request at step" in m for m in messages), messages
    assert any(re.search(r"checkpoints/stage2/stage2-step\d+\.pt$", rel) for rel in env.manifest(job_id))
    assert not _rank_pids()


def test_a_worker_with_fewer_ranks_fails_the_job_with_a_clear_message(tmp_path: Path, tiny_bench: Path) -> None:
    env = make_env(tmp_path, tiny_bench, worker_cpu_ranks=1)
    job_id = env.submit(tiny_spec("too-big", resources=RANKS))
    run_job(job_id, context=env.context)
    job = env.job(job_id)
    assert (job.status, job.error_reason) == (JobStatus.FAILED.value, "user")
    assert job.error_detail is not None
    assert "resources.gpus=2" in job.error_detail and "at most 1 CPU rank(s)" in job.error_detail
    assert "queue 'gpu'" in job.error_detail


def test_bad_input_found_by_one_rank_fails_the_job_with_that_ranks_message(tmp_path: Path, tiny_bench: Path) -> None:
    source = tmp_path / "toon"
    shutil.copytree(tiny_bench / "toon", source)
    env = make_env(tmp_path, tiny_bench, source_root=source)
    broken = sorted((source / "images" / "train").glob("*.png"))[3]
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not an image" * 4)  # after registration: found by whichever rank reads it

    job_id = env.submit(tiny_spec("ddp-corrupt", resources=RANKS, stage2=STAGE2))
    run_job(job_id, context=env.context)
    job = env.job(job_id)
    assert (job.status, job.error_reason, job.attempt) == ("failed", "user", 1), (job.status, job.error_detail)
    assert job.error_detail is not None and broken.name in job.error_detail
    assert not _rank_pids()

"""Leftover work folders of jobs and evaluations that are not running go; running ones, fresh ones and
anything else in the folder stay."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from service import evaluations, jobs
from service.schemas import DataRef
from tests.support.worker_env import tiny_spec
from tests.worker.test_pipeline import make_env
from worker.scratch_janitor import clean_scratch


def _folder(root: Path, name: str, *, age_s: float, size: int = 1000) -> Path:
    path = root / name
    (path / "checkpoints").mkdir(parents=True)
    (path / "checkpoints" / "last.pt").write_bytes(b"x" * size)
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def test_only_idle_folders_of_work_that_is_not_running_are_removed(tmp_path: Path, tiny_bench: Path) -> None:
    env = make_env(tmp_path, tiny_bench)
    scratch = env.context.scratch
    names = ("failed", "running", "queued", "still-running")
    failed, running, queued, still_running = (env.submit(tiny_spec(name)) for name in names)
    with env.context.session() as session:
        for job_id in (failed, running, still_running):
            assert jobs.claim_job(session=session, job_id=job_id, worker="w") is not None
        jobs.finish(session=session, job_id=failed, status="failed", reason="user", detail="bad data")
        jobs.finish(session=session, job_id=running, status="succeeded")
        done = jobs.get_job(session=session, job_id=running)
        target = DataRef(dataset="fog", split="val")
        evaluation = evaluations.create_evaluation(session=session, job=done, targets=[target])
        assert evaluations.claim_evaluation(session=session, evaluation_id=evaluation.id, worker="w") is not None
    hour = 3600.0
    gone = [
        _folder(scratch, failed, age_s=2 * hour, size=5000),
        _folder(scratch, f"{failed}.control", age_s=2 * hour),
        _folder(scratch, queued, age_s=2 * hour),  # a new attempt pulls its checkpoints from storage anyway
        _folder(scratch, str(uuid.uuid4()), age_s=2 * hour),  # a job since deleted from the database
    ]
    kept = [
        _folder(scratch, still_running, age_s=2 * hour),  # running: never, however old
        _folder(scratch, f"eval-{evaluation.id}", age_s=2 * hour),  # a running evaluation
        _folder(scratch, running, age_s=60),  # just (re)created: an attempt may have claimed it a moment ago
        _folder(scratch, "not-a-job-folder", age_s=2 * hour),
    ]
    cut_short = _folder(scratch, f".trash-{failed}-0123abcd", age_s=0)  # an earlier removal that was interrupted
    cleaned = clean_scratch(env.context, idle_s=hour)
    assert not cut_short.exists()
    assert sorted(cleaned.removed) == sorted(p.name for p in gone)
    assert cleaned.freed_bytes == 5000 + 3 * 1000
    assert not any(p.exists() for p in gone) and all(p.exists() for p in kept)
    assert clean_scratch(env.context, idle_s=hour).removed == []

"""The worker's sweeper applies checkpoint retention; afterwards the job is not resumed and stays downloadable."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from service import auth, jobs
from service.db import upgrade_database
from service.models import Job, utcnow
from service.schemas import JobSpec
from service.settings import Settings
from tests.service.factories import spec_dict
from tests.support.worker_env import wait_for
from worker import pipeline
from worker.context import WorkerContext
from worker.sweeper import Sweeper
from worker.work_dir_sync import WorkDirSync, checkpoint_prefix


def test_sweeper_deletes_old_checkpoints_and_the_job_is_not_resumed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", checkpoint_retention_days=1)
    upgrade_database(settings)
    context = WorkerContext(settings)
    with context.session() as session:
        _, key = auth.create_api_key(session=session, team_name="vision")
        job_id = jobs.create_job(session=session, team_id=key.team_id, spec=JobSpec.model_validate(spec_dict())).id
    work = tmp_path / "work"
    (work / "checkpoints" / "stage1").mkdir(parents=True)
    (work / "checkpoints" / "stage1" / "step2.pt").write_bytes(b"weights" * 1000)
    (work / "state.json").write_text('{"stage1": "done"}')
    assert WorkDirSync(context.store, job_id, work).push() == 2  # what a real attempt leaves in storage
    student = context.store.put_bytes(f"jobs/{job_id}/artifacts/student.safetensors", b"the student")
    with context.session() as session:
        jobs.add_artifact(
            session=session, job_id=job_id, name="student.safetensors", kind="student", size=student.size,
            sha256=student.sha256, storage_key=student.key,
        )  # fmt: skip
        session.execute(
            update(Job).where(Job.id == job_id).values(status="succeeded", finished_at=utcnow() - timedelta(days=2))
        )

    sweeper = Sweeper(context, interval_s=0.1).start()
    try:

        def purged() -> bool:
            with context.session() as session:
                return jobs.get_job(session=session, job_id=job_id).checkpoints_deleted_at is not None

        wait_for(purged, timeout_s=20, what="the sweeper to apply retention")
    finally:
        sweeper.stop()
    assert context.store.list(checkpoint_prefix(job_id)) == []

    with context.session() as session:
        before = len(jobs.list_events(session=session, job_id=job_id))
    pipeline.run_job(job_id, context=context)  # a stray redelivery: the finished job is not claimed or resumed
    with context.session() as session:
        job = jobs.get_job(session=session, job_id=job_id)
        events = jobs.list_events(session=session, job_id=job_id)
        (artifact,) = jobs.list_artifacts(session=session, job_id=job_id)
    assert (job.status, job.attempt, len(events)) == ("succeeded", 0, before)
    assert [e.type for e in events].count("retention") == 1
    assert not (context.scratch / job_id).exists()
    assert WorkDirSync(context.store, job_id, tmp_path / "resume").pull() == 0  # nothing a resume could use
    assert context.store.get_bytes(artifact.storage_key) == b"the student"

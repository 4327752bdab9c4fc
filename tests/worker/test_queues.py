"""Work re-sent by the worker or its sweeper goes back to the queue it was submitted to (one queue per GPU kind).

The messages are read back from the embedded broker (kombu's SQLAlchemy transport over SQLite in data_dir).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import update

from service import evaluations, jobs
from service.models import Job, utcnow
from service.schemas import DataRef
from tests.support.worker_env import tiny_spec
from tests.worker.test_pipeline import make_env, sent_messages
from worker import sweeper


def test_the_sweeper_resends_jobs_and_evaluations_to_their_own_queue(tmp_path: Path, tiny_bench: Path) -> None:
    env = make_env(tmp_path, tiny_bench, queues=["gpu", "a100"])
    job_id = env.submit(tiny_spec("on-a100", resources={"queue": "a100", "gpus": 1}))
    done_id = env.submit(tiny_spec("done-on-a100", resources={"queue": "a100", "gpus": 1}))
    with env.context.session() as session:
        assert jobs.claim_job(session=session, job_id=done_id, worker="w@host") is not None
        jobs.finish(session=session, job_id=done_id, status="succeeded")
        job = jobs.get_job(session=session, job_id=done_id)
        evaluation_id = evaluations.create_evaluation(
            session=session, job=job, targets=[DataRef(dataset="fog", split="val")]
        ).id

    result = sweeper.sweep_once(env.context, requeue_after_s=0)

    assert sorted(result.resent) == sorted([job_id, evaluation_id])
    messages = sent_messages(env)
    assert [queue for queue, payload in messages if job_id in payload] == ["a100"], messages
    assert [queue for queue, payload in messages if evaluation_id in payload] == ["a100"], messages
    assert all(queue == "a100" for queue, _ in messages)


def test_a_queued_backlog_is_resent_once_per_period_whatever_the_number_of_sweepers(
    tmp_path: Path, tiny_bench: Path
) -> None:
    env = make_env(tmp_path, tiny_bench)
    job_id = env.submit(tiny_spec("waits-behind-busy-gpus"))

    def age(seconds: float) -> None:
        with env.context.session() as session:
            session.execute(
                update(Job).where(Job.id == job_id).values(updated_at=utcnow() - timedelta(seconds=seconds))
            )

    age(200)
    sent = [sweeper.sweep_once(env.context, requeue_after_s=120).resent for _ in range(3)]  # three workers
    assert sent == [[job_id], [], []]
    assert len([1 for _, payload in sent_messages(env) if job_id in payload]) == 1
    age(121)  # a period later, still queued: once more
    assert sweeper.sweep_once(env.context, requeue_after_s=120).resent == [job_id]
    assert sweeper.sweep_once(env.context, requeue_after_s=120).resent == []
    assert len([1 for _, payload in sent_messages(env) if job_id in payload]) == 2

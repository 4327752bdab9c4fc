"""Work re-sent by the worker or its sweeper goes back to the queue it was submitted to (one queue per GPU kind).

The messages are read back from the embedded broker (kombu's SQLAlchemy transport over SQLite in data_dir).
"""

from __future__ import annotations

from pathlib import Path

from service import evaluations, jobs
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

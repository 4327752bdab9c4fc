"""The operator's figures: the wait of a queued job counts from when it last went to the queue."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from service import jobs
from service.models import Job, JobEvent, utcnow
from service.ops_gauges import read_gauges
from tests.service.factories import make_job, make_team


def test_a_job_requeued_after_running_has_waited_only_since_then(session: Session) -> None:
    team = make_team(session)
    job = make_job(session, team, resources={"queue": "gauges"})  # its own queue: the database is shared
    now = utcnow()
    session.execute(update(Job).where(Job.id == job.id).values(created_at=now - timedelta(days=1)))
    session.execute(update(JobEvent).where(JobEvent.job_id == job.id).values(time=now - timedelta(days=1)))
    assert jobs.claim_job(session=session, job_id=job.id, worker="w") is not None
    jobs.LIFECYCLE.requeue(session=session, row_id=job.id, spend_attempt=False, message="handed back")
    session.execute(
        update(JobEvent).where(JobEvent.job_id == job.id, JobEvent.from_status == "running")
        .values(time=now - timedelta(seconds=90))
    )  # fmt: skip
    gauges = read_gauges(session=session, queues=["gauges", "gauges-idle"], capacity_stale_s=60, now=now)
    assert 89 <= gauges.oldest_queued_s["gauges"] <= 91, gauges.oldest_queued_s
    assert gauges.queued_by_queue["gauges"] == 1 and gauges.queued_by_queue["gauges-idle"] == 0
    assert gauges.oldest_queued_s["gauges-idle"] == 0.0

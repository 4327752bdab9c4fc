"""What an operator watches, read from the database when Prometheus scrapes /metrics.

The numbers come from the rows every process already writes (jobs, evaluations, worker slots, datasets,
the notification outbox), so they are the same whichever API process answers and need no worker to
export anything: queue depth and the age of the oldest queued job per queue (work waiting for GPUs),
live workers and their slots per queue (capacity), evaluations by state, sets still validating, and
notifications waiting to be delivered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service import capacity
from service.models import (
    Dataset,
    DatasetStatus,
    Evaluation,
    Job,
    JobEvent,
    JobStatus,
    NotificationDelivery,
    utcnow,
)


@dataclass
class OpsGauges:
    """One scrape's figures; every mapping is keyed by queue or state."""

    jobs_by_state: dict[str, int] = field(default_factory=dict)
    queued_by_queue: dict[str, int] = field(default_factory=dict)
    oldest_queued_s: dict[str, float] = field(default_factory=dict)
    live_workers: dict[str, int] = field(default_factory=dict)
    worker_slots: dict[str, int] = field(default_factory=dict)
    evaluations_by_state: dict[str, int] = field(default_factory=dict)
    datasets_validating: int = 0
    notifications_pending: int = 0


def read_gauges(
    *, session: Session, queues: list[str], capacity_stale_s: float, now: datetime | None = None
) -> OpsGauges:
    """Every figure at once; a configured queue with nothing in it reads 0, not absent."""
    now = now or utcnow()
    gauges = OpsGauges()
    gauges.jobs_by_state = {status.value: 0 for status in JobStatus}
    for state, count in session.execute(select(Job.status, func.count()).group_by(Job.status)):
        gauges.jobs_by_state[str(state)] = int(count)
    gauges.queued_by_queue = dict.fromkeys(queues, 0)
    gauges.oldest_queued_s = dict.fromkeys(queues, 0.0)
    # How long each job has waited since it last went (back) to the queue: a job requeued after hours of
    # training has not waited hours. The created event is a move to queued too.
    since = (
        select(JobEvent.job_id, func.max(JobEvent.time).label("since"))
        .where(JobEvent.to_status == JobStatus.QUEUED.value)
        .group_by(JobEvent.job_id)
        .subquery()
    )
    queued = (
        select(Job.queue, func.count(), func.min(func.coalesce(since.c.since, Job.created_at)))
        .select_from(Job)
        .outerjoin(since, since.c.job_id == Job.id)
        .where(Job.status == JobStatus.QUEUED.value)
        .group_by(Job.queue)
    )
    for queue, count, oldest in session.execute(queued):
        gauges.queued_by_queue[str(queue)] = int(count)
        gauges.oldest_queued_s[str(queue)] = max(0.0, (now - _aware(oldest, now)).total_seconds())
    gauges.live_workers = dict.fromkeys(queues, 0)
    gauges.worker_slots = dict.fromkeys(queues, 0)
    for queue, rows in capacity.live_slots(session=session, stale_s=capacity_stale_s).items():
        gauges.live_workers[queue] = len(rows)
        gauges.worker_slots[queue] = sum(row.slots for row in rows)
    gauges.evaluations_by_state = {status.value: 0 for status in JobStatus}
    for state, count in session.execute(select(Evaluation.status, func.count()).group_by(Evaluation.status)):
        gauges.evaluations_by_state[str(state)] = int(count)
    validating = select(func.count()).select_from(Dataset).where(Dataset.status == DatasetStatus.VALIDATING.value)
    gauges.datasets_validating = int(session.scalar(validating) or 0)
    pending = select(func.count()).select_from(NotificationDelivery).where(NotificationDelivery.status == "pending")
    gauges.notifications_pending = int(session.scalar(pending) or 0)
    return gauges


def _aware(moment: datetime, now: datetime) -> datetime:
    """SQLite hands back naive UTC times; compare like with like."""
    return moment.replace(tzinfo=now.tzinfo) if moment.tzinfo is None and now.tzinfo is not None else moment

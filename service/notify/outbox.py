"""The notification outbox: a job's status change writes its delivery rows in the change's own transaction.

Nothing is sent here. Writing the row with the status UPDATE means a notification exists exactly when the
change committed (a rolled-back change leaves none, a crash after commit loses none), and the job never
waits on a receiver: the deliverer thread (service/notify/deliverer.py) sends rows later.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from service.models import Job, NotificationDelivery, new_id, utcnow

PENDING, DELIVERED, ABANDONED = "pending", "delivered", "abandoned"


def record_status_change(*, session: Session, job: Job, from_status: str | None, to_status: str) -> None:
    """Queue a notification when the job's spec asks for ``to_status`` (called by jobs.transition)."""
    notify = (job.spec or {}).get("notify")
    if not notify or to_status not in notify.get("events", ()):
        return
    now = utcnow()
    delivery_id = new_id()
    session.add(
        NotificationDelivery(
            id=delivery_id,
            job_id=job.id,
            team_id=job.team_id,
            event=to_status,
            url=notify["url"],
            payload=_payload(delivery_id, job, from_status, to_status, now.isoformat()),
            status=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )


def _payload(delivery_id: str, job: Job, from_status: str | None, to_status: str, time: str) -> dict[str, Any]:
    """The JSON body; ``id`` is the same on every retry, so a receiver can drop duplicates."""
    error = None
    if job.error_reason is not None:
        error = {"reason": job.error_reason, "detail": job.error_detail}
    return {
        "id": delivery_id,
        "type": f"job.{to_status}",
        "time": time,
        "job": {
            "id": job.id,
            "name": job.name,
            "status": to_status,
            "previous_status": from_status,
            "attempt": job.attempt,
            "error": error,
        },
    }

"""Worker capacity per queue: how many ranks one job may run on each live worker.

Every worker keeps one ``worker_slots`` row per queue it consumes (slots, device kind, last seen),
refreshed every ``capacity_interval_s`` and withdrawn at a clean shutdown; a row older than
``capacity_stale_s`` belongs to a worker that is gone. The API refuses a job whose queue has live
workers but none that can hold ``resources.gpus`` ranks; a queue with no live worker at all takes
the job, which waits for one (the worker that receives it then fails it if it is too small).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from service.models import WorkerSlots, utcnow


def advertise(*, session: Session, worker: str, queues: Iterable[str], slots: int, device: str) -> None:
    """Record (or refresh) what ``worker`` offers one job on each of ``queues``."""
    now = utcnow()
    for queue in queues:
        session.merge(WorkerSlots(worker=worker, queue=queue, slots=slots, device=device, seen_at=now))


def withdraw(*, session: Session, worker: str) -> None:
    """Forget ``worker`` (it is shutting down)."""
    session.execute(delete(WorkerSlots).where(WorkerSlots.worker == worker))


def prune(*, session: Session, older_than_s: float) -> None:
    """Drop rows of workers not seen for ``older_than_s`` (hosts that went away for good)."""
    session.execute(delete(WorkerSlots).where(WorkerSlots.seen_at < utcnow() - timedelta(seconds=older_than_s)))


def live_slots(*, session: Session, stale_s: float) -> dict[str, list[WorkerSlots]]:
    """Rows seen within ``stale_s`` seconds, by queue, biggest first."""
    rows = session.scalars(
        select(WorkerSlots)
        .where(WorkerSlots.seen_at >= utcnow() - timedelta(seconds=stale_s))
        .order_by(WorkerSlots.queue, WorkerSlots.slots.desc(), WorkerSlots.worker)
    )
    found: dict[str, list[WorkerSlots]] = {}
    for row in rows:
        found.setdefault(row.queue, []).append(row)
    return found


def describe(live: dict[str, list[WorkerSlots]]) -> str:
    """``queue: 2 GPUs (w1), 1 CPU rank (w2); other: ...`` for messages."""

    def one(row: WorkerSlots) -> str:
        unit = "GPU" if row.device == "cuda" else "CPU rank"
        return f"{row.slots} {unit}{'s' if row.slots != 1 else ''} ({row.worker})"

    return "; ".join(f"{queue}: {', '.join(one(r) for r in rows)}" for queue, rows in sorted(live.items()))


def too_big(*, session: Session, queue: str, ranks: int, stale_s: float) -> str | None:
    """Why no live worker of ``queue`` can run ``ranks`` ranks, or None (it fits, or no worker is live there)."""
    live = live_slots(session=session, stale_s=stale_s)
    here = live.get(queue)
    if not here or max(row.slots for row in here) >= ranks:
        return None
    return f"no live worker on queue {queue!r} can run {ranks} ranks; live workers per queue: {describe(live)}"

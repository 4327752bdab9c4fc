"""The one lifecycle that jobs and evaluations share: state machine, claim, heartbeat, cancel, recovery.

A ``Lifecycle`` binds these mechanics to one table (``jobs`` or ``evaluations``). Every status change
is a compare-and-set UPDATE (``WHERE id = :id AND status IN :expected``) in the caller's transaction,
reported to the table's event hook (jobs write job_events rows; evaluations only log). Allowed moves:

    queued     -> running (claim) | cancelled (cancel) | failed
    running    -> succeeded | failed | cancelling (cancel) | cancelled | queued (requeue, hand back)
    cancelling -> cancelled | failed
    succeeded, failed, cancelled: terminal

The worker side (claim with attempt + 1, heartbeat, requeue of a lost worker's row, re-send of a
queued row whose message was lost) is written once here; service/jobs.py and service/evaluations.py
expose it under their own names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from service.errors import InvalidTransition, NotFound
from service.models import TERMINAL_STATUSES, Evaluation, FailureReason, Job, JobStatus, utcnow

_logger = logging.getLogger(__name__)

ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLING, JobStatus.CANCELLED, JobStatus.QUEUED}
    ),
    JobStatus.CANCELLING: frozenset({JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}
ACTIVE_STATUSES = (JobStatus.RUNNING, JobStatus.CANCELLING)

Row = TypeVar("Row", Job, Evaluation)


# Records one lifecycle event of a row at its current attempt, in the caller's transaction:
# (session, row, type, message, from_status, to_status).
EventHook = Callable[[Session, Row, str, str, str | None, str | None], None]


def _as_statuses(value: JobStatus | str | Iterable[JobStatus | str]) -> list[JobStatus]:
    if isinstance(value, str):
        return [JobStatus(value)]
    return [JobStatus(v) for v in value]


def _age(older_than: timedelta | float) -> timedelta:
    return older_than if isinstance(older_than, timedelta) else timedelta(seconds=older_than)


@dataclass(frozen=True)
class Lifecycle(Generic[Row]):
    """The shared mechanics bound to one table.

    Attributes:
        model: the ORM class (it has status, attempt, max_attempts, heartbeat_at, cancel_requested,
            queue, created_at, updated_at, started_at, finished_at).
        noun: "job" or "evaluation", for messages.
        not_found: the DomainError raised for an unknown id.
        failure_columns: the columns a failure writes, from (reason, detail).
        on_event: the event hook (every transition and notable message goes through it).
        reset: columns cleared when an attempt ends without finishing the row (requeue, hand back).
    """

    model: type[Row]
    noun: str
    not_found: type[NotFound]
    failure_columns: Callable[[str, str | None], dict[str, Any]]
    on_event: EventHook[Row]
    reset: Mapping[str, Any] = field(default_factory=lambda: {"heartbeat_at": None})

    # --- reading -------------------------------------------------------------------------------

    def get(self, session: Session, row_id: str) -> Row:
        """The row (fresh from the database), or ``not_found``."""
        row = session.scalar(
            select(self.model).where(self.model.id == row_id).execution_options(populate_existing=True)
        )
        if row is None:
            raise self.not_found(f"no {self.noun} {row_id!r}")
        return row

    def event(self, session: Session, row: Row, *, type: str, message: str = "") -> None:
        """Append a free-text event for ``row`` at its current attempt."""
        self.on_event(session, row, type, message, None, None)

    # --- the state machine ---------------------------------------------------------------------

    def transition(
        self,
        *,
        session: Session,
        row_id: str,
        to: JobStatus | str,
        expected_from: JobStatus | str | Iterable[JobStatus | str] | None = None,
        message: str = "",
        event_type: str = "transition",
        values: Mapping[str, Any] | None = None,
    ) -> Row:
        """Move a row to ``to`` if (and only if) it is still in one of ``expected_from``.

        ``expected_from`` defaults to every state that may legally move to ``to``. Extra column
        ``values`` are written in the same UPDATE. Raises InvalidTransition when the row is elsewhere
        (it is untouched), ``not_found`` when it does not exist.
        """
        target = JobStatus(to)
        sources = (
            [s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets]
            if expected_from is None
            else _as_statuses(expected_from)
        )
        illegal = [s for s in sources if target not in ALLOWED_TRANSITIONS[s]]
        if illegal:
            raise InvalidTransition(
                f"{illegal[0].value} -> {target.value} is not an allowed transition",
                current=illegal[0].value,
                requested=target.value,
            )
        now = utcnow()
        columns: dict[str, Any] = {"status": target.value, "updated_at": now, **(values or {})}
        if target in TERMINAL_STATUSES:
            columns.setdefault("finished_at", now)
        current = session.scalar(select(self.model.status).where(self.model.id == row_id))
        if current is None:
            raise self.not_found(f"no {self.noun} {row_id!r}")
        result = session.execute(
            update(self.model)
            .where(self.model.id == row_id, self.model.status.in_([s.value for s in sources]))
            .values(**columns)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            current = session.scalar(
                select(self.model.status).where(self.model.id == row_id).execution_options(populate_existing=True)
            )
            raise InvalidTransition(
                f"{self.noun} {row_id} is {current}, cannot move to {target.value}",
                current=current,
                requested=target.value,
            )
        row = self.get(session, row_id)
        from_status = current if current in {s.value for s in sources} else None
        self.on_event(session, row, event_type, message or f"{current} -> {target.value}", from_status, target.value)
        session.flush()
        return row

    def request_cancel(self, *, session: Session, row: Row) -> Row:
        """Cancel: a queued row is cancelled at once; a running one goes to cancelling with the flag set.

        Cancelling a cancelling row is a no-op; a terminal row raises InvalidTransition (409).
        """
        status = JobStatus(row.status)
        if status is JobStatus.CANCELLING:
            return row
        if status is JobStatus.QUEUED:
            try:
                return self.transition(
                    session=session,
                    row_id=row.id,
                    to=JobStatus.CANCELLED,
                    expected_from=status,
                    message="cancelled before it started",
                    values={"cancel_requested": True},
                )
            except InvalidTransition:  # claimed meanwhile: cancel the running row
                status = JobStatus(self.get(session, row.id).status)
        if status is JobStatus.RUNNING:
            return self.transition(
                session=session,
                row_id=row.id,
                to=JobStatus.CANCELLING,
                expected_from=status,
                message="cancel requested",
                values={"cancel_requested": True},
            )
        raise InvalidTransition(
            f"{self.noun} {row.id} is already {status.value}; only queued or running {self.noun}s can be cancelled",
            current=status.value,
            requested=JobStatus.CANCELLED.value,
        )

    # --- worker side ---------------------------------------------------------------------------

    def claim(self, *, session: Session, row_id: str, worker: str | None = None) -> Row | None:
        """queued -> running with attempt + 1; None when the row is not queued (redelivery, cancelled, done).

        The claim event names the worker (its Celery node name) and the attempt it starts.
        """
        row = self.get(session, row_id)
        now = utcnow()
        try:
            claimed = self.transition(
                session=session,
                row_id=row_id,
                to=JobStatus.RUNNING,
                expected_from=JobStatus.QUEUED,
                message=f"claimed by {worker or 'a worker'}: attempt {row.attempt + 1} of {row.max_attempts}",
                values={
                    **self.reset,
                    "attempt": self.model.attempt + 1,
                    "heartbeat_at": now,
                    "started_at": row.started_at or now,
                },
            )
        except InvalidTransition:
            _logger.info("%s %s not claimable (status %s); ignoring the message", self.noun, row_id, row.status)
            return None
        return claimed

    def heartbeat(self, *, session: Session, row_id: str, attempt: int | None = None) -> bool:
        """Record that the worker is alive. Returns True when the worker should stop.

        It should stop when cancel was requested, or when the row is no longer running under this
        attempt (the sweeper requeued it and another worker owns it now).
        """
        query = update(self.model).where(
            self.model.id == row_id, self.model.status.in_([s.value for s in ACTIVE_STATUSES])
        )
        if attempt is not None:
            query = query.where(self.model.attempt == attempt)
        result = session.execute(query.values(heartbeat_at=utcnow()).execution_options(synchronize_session=False))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return True
        return bool(session.scalar(select(self.model.cancel_requested).where(self.model.id == row_id)))

    def finish(
        self,
        *,
        session: Session,
        row_id: str,
        status: JobStatus | str,
        reason: FailureReason | str | None = None,
        detail: str | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> Row:
        """End a running (or cancelling) row: succeeded, failed (with reason user|infra) or cancelled."""
        target = JobStatus(status)
        if target not in TERMINAL_STATUSES:
            raise InvalidTransition(f"finish() needs a terminal status, got {target.value}", requested=target.value)
        columns: dict[str, Any] = dict(values or {})
        if target is JobStatus.FAILED:
            columns.update(self.failure_columns(FailureReason(reason or FailureReason.INFRA).value, detail))
        return self.transition(
            session=session,
            row_id=row_id,
            to=target,
            expected_from=[s for s in ACTIVE_STATUSES if target in ALLOWED_TRANSITIONS[s]],
            message=detail or target.value,
            values=columns,
        )

    def requeue(self, *, session: Session, row_id: str, message: str, spend_attempt: bool = True) -> Row:
        """running -> queued (send it again after commit). ``spend_attempt=False`` gives the attempt back:
        a handoff or a worker too small for the row must not use up ``max_attempts``."""
        values: dict[str, Any] = dict(self.reset)
        if not spend_attempt:
            values["attempt"] = self.model.attempt - 1  # the next claim adds one again
        return self.transition(
            session=session,
            row_id=row_id,
            to=JobStatus.QUEUED,
            expected_from=JobStatus.RUNNING,
            message=message,
            values=values,
        )

    def find_stale(self, *, session: Session, older_than: timedelta | float, now: datetime | None = None) -> list[Row]:
        """Running/cancelling rows whose last heartbeat is older than ``older_than`` (worker presumed lost)."""
        cutoff = (now or utcnow()) - _age(older_than)
        return list(
            session.scalars(
                select(self.model)
                .where(
                    self.model.status.in_([s.value for s in ACTIVE_STATUSES]),
                    or_(
                        self.model.heartbeat_at < cutoff,
                        and_(self.model.heartbeat_at.is_(None), self._touched_at() < cutoff),
                    ),
                )
                .order_by(self.model.created_at)
            )
        )

    def find_queued(self, *, session: Session, older_than: timedelta | float, now: datetime | None = None) -> list[Row]:
        """Rows queued for longer than ``older_than`` (their message may be lost; the sweeper re-sends)."""
        cutoff = (now or utcnow()) - _age(older_than)
        return list(
            session.scalars(
                select(self.model)
                .where(self.model.status == JobStatus.QUEUED.value, self._touched_at() < cutoff)
                .order_by(self.model.created_at)
            )
        )

    def take_resend(
        self, *, session: Session, row_id: str, older_than: timedelta | float, now: datetime | None = None
    ) -> bool:
        """Claim the re-send of a row still queued since before the cutoff, moving its ``updated_at`` to now.

        Every worker's sweeper finds the same queued rows; only the one whose conditional update lands sends
        the message, so a backlog is re-sent once per ``older_than``, not by every worker on every sweep.
        """
        now = now or utcnow()
        taken = session.execute(
            update(self.model)
            .where(
                self.model.id == row_id,
                self.model.status == JobStatus.QUEUED.value,
                self._touched_at() < now - _age(older_than),
            )
            .values(updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return bool(taken.rowcount == 1)  # type: ignore[attr-defined]

    def requeue_stale(self, *, session: Session, row_id: str) -> JobStatus:
        """Recover a row whose worker was lost; returns the new status (enqueue again after commit if queued).

        A cancelling row becomes cancelled; a running one is queued again while attempts < max_attempts,
        else it fails with reason infra.
        """
        row = self.get(session, row_id)
        status = JobStatus(row.status)
        if status is JobStatus.CANCELLING:
            self.transition(
                session=session, row_id=row_id, to=JobStatus.CANCELLED, expected_from=status,
                message="worker lost while cancelling",
            )  # fmt: skip
            return JobStatus.CANCELLED
        if status is not JobStatus.RUNNING:
            raise InvalidTransition(
                f"{self.noun} {row_id} is {status.value}; only running {self.noun}s can be requeued",
                current=status.value,
                requested=JobStatus.QUEUED.value,
            )
        if row.attempt < row.max_attempts:
            self.requeue(
                session=session,
                row_id=row_id,
                message=f"worker lost (no heartbeat); requeued after attempt {row.attempt}/{row.max_attempts}",
            )
            return JobStatus.QUEUED
        detail = f"worker lost on all {row.max_attempts} attempts (out of memory or crash?)"
        self.transition(
            session=session,
            row_id=row_id,
            to=JobStatus.FAILED,
            expected_from=status,
            message=f"worker lost on all {row.max_attempts} attempts",
            values=self.failure_columns(FailureReason.INFRA.value, detail),
        )
        return JobStatus.FAILED

    def _touched_at(self) -> Any:
        # Evaluations created before updated_at existed have none: their creation time stands in.
        return func.coalesce(self.model.updated_at, self.model.created_at)

"""Per-team limits on running jobs and GPUs, checked where a worker claims a job.

A job the team's limits do not allow stays ``queued`` with a ``waiting_reason`` (shown by the API,
``gkd status`` and the dashboard); it is not an error. The check runs inside the claim transaction
with the team row locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite transactions begin
IMMEDIATE, so writers are serialised anyway), so two workers claiming two jobs of one team at the
same moment cannot both pass it. A refused claim drops its queue message; when one of the team's
jobs stops holding capacity, the worker re-sends the team's oldest waiting jobs that now fit
(``startable``), and the sweeper's periodic re-send of long-queued jobs is the backstop.

Running jobs are those in ``running`` or ``cancelling`` (both still hold their ranks); a job holds
the GPUs its spec asks for (``resources.gpus``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from service.models import Job, JobEvent, JobStatus, Team, utcnow
from service.settings import Settings

HOLDING = (JobStatus.RUNNING.value, JobStatus.CANCELLING.value)


@dataclass(frozen=True)
class TeamLimits:
    """What one team may hold at once; None means no limit."""

    max_running_jobs: int | None = None
    max_gpus: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TeamLimits:
        return cls(max_running_jobs=settings.team_max_running_jobs, max_gpus=settings.team_max_gpus)

    @property
    def unlimited(self) -> bool:
        return self.max_running_jobs is None and self.max_gpus is None


@dataclass(frozen=True)
class TeamUsage:
    """What a team's running jobs hold now."""

    running_jobs: int = 0
    gpus: int = 0

    def plus(self, gpus: int) -> TeamUsage:
        return TeamUsage(self.running_jobs + 1, self.gpus + gpus)


def job_gpus(spec: dict[str, Any]) -> int:
    """GPUs (ranks) a job holds while it runs: its spec's ``resources.gpus`` (JobSpec's default is 1)."""
    return int((spec.get("resources") or {}).get("gpus", 1))


def _running_jobs(limits: TeamLimits, usage: TeamUsage, gpus: int) -> str | None:
    limit = limits.max_running_jobs
    if limit is None or usage.running_jobs < limit:
        return None
    return f"waiting: team at its limit of {limit} running job{'s' if limit != 1 else ''}"


def _gpus(limits: TeamLimits, usage: TeamUsage, gpus: int) -> str | None:
    limit = limits.max_gpus
    if limit is None or usage.gpus + gpus <= limit:
        return None
    if gpus > limit:
        return (
            f"waiting: the job asks for {gpus} GPUs, more than the team's limit of {limit} GPUs; "
            "it starts only if the limit is raised (or cancel it and resubmit with fewer)"
        )
    return f"waiting: team at its limit of {limit} GPUs ({usage.gpus} in use, this job needs {gpus})"


# Each check returns why the job must wait, or None; the first refusal is the reason shown.
CHECKS: tuple[Callable[[TeamLimits, TeamUsage, int], str | None], ...] = (_running_jobs, _gpus)


def refusal(*, limits: TeamLimits, usage: TeamUsage, gpus: int) -> str | None:
    """Why a job needing ``gpus`` may not start next to ``usage``, or None when it may."""
    for check in CHECKS:
        reason = check(limits, usage, gpus)
        if reason is not None:
            return reason
    return None


def lock_team(*, session: Session, team_id: str) -> None:
    """Hold the team row until the transaction ends, so claims of one team's jobs take turns.

    ``FOR NO KEY UPDATE`` on PostgreSQL: it excludes other claims exactly like ``FOR UPDATE`` but not the
    key-share lock an INSERT of a new job takes on its team, so submissions never wait for a claim.
    SQLite ignores it (its transactions already hold the write lock).
    """
    session.execute(select(Team.id).where(Team.id == team_id).with_for_update(key_share=True))


def usage(*, session: Session, team_id: str) -> TeamUsage:
    """Running jobs and GPUs the team holds, read fresh from the database."""
    specs = session.execute(select(Job.spec).where(Job.team_id == team_id, Job.status.in_(HOLDING))).scalars()
    total = TeamUsage()
    for spec in specs:
        total = total.plus(job_gpus(spec))
    return total


def admit(*, session: Session, job: Job, limits: TeamLimits) -> str | None:
    """Lock the team and check its limits for ``job``; returns why it must wait, or None (claim it now).

    Call inside the claim transaction, before the compare-and-set: the lock is held until commit.
    """
    if limits.unlimited:
        return None
    lock_team(session=session, team_id=job.team_id)
    return refusal(limits=limits, usage=usage(session=session, team_id=job.team_id), gpus=job_gpus(job.spec))


def mark_waiting(*, session: Session, job: Job, reason: str) -> None:
    """Record why the queued job waits; an event only when the reason is new (re-sent messages repeat it).

    ``updated_at`` moves too: the sweeper re-sends jobs queued longer than ``queued_resend_s``, so a
    waiting job is re-tried by the backstop once per that period, not on every sweep of every worker.
    """
    session.execute(
        update(Job)
        .where(Job.id == job.id, Job.status == JobStatus.QUEUED.value)
        .values(updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    result = session.execute(
        update(Job)
        .where(
            Job.id == job.id,
            Job.status == JobStatus.QUEUED.value,
            or_(Job.waiting_reason.is_(None), Job.waiting_reason != reason),
        )
        .values(waiting_reason=reason)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount == 1:  # type: ignore[attr-defined]
        session.add(JobEvent(job_id=job.id, time=utcnow(), type="waiting", message=reason, attempt=job.attempt))
    session.flush()


def startable(*, session: Session, team_id: str, limits: TeamLimits) -> list[tuple[str, str]]:
    """(job id, queue) of the team's waiting jobs that fit now, oldest first; the first that does not fit
    stops the scan, so a big job is not overtaken for ever by small ones."""
    if limits.unlimited:
        return []
    now = usage(session=session, team_id=team_id)
    waiting = session.execute(
        select(Job.id, Job.queue, Job.spec)
        .where(Job.team_id == team_id, Job.status == JobStatus.QUEUED.value, Job.waiting_reason.is_not(None))
        .order_by(Job.created_at, Job.id)
    ).all()
    ready: list[tuple[str, str]] = []
    for job_id, queue, spec in waiting:
        gpus = job_gpus(spec)
        if refusal(limits=limits, usage=now, gpus=gpus) is not None:
            break
        ready.append((job_id, queue))
        now = now.plus(gpus)
    return ready

"""Per-team limits at claim time, on SQLite and PostgreSQL: a refused job waits in queued with its reason,
two workers claiming two jobs of one team at once never exceed the limit, and freed capacity names the
waiting jobs to re-send."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from service import jobs, team_limits
from service.db import session_factory, session_scope
from service.models import Job, JobEvent, JobStatus, utcnow
from service.settings import Settings
from service.team_limits import TeamLimits, TeamUsage, refusal
from tests.service.factories import make_job, make_team

ONE_JOB = TeamLimits(max_running_jobs=1)
IN_USE_3_NEEDS_2 = "3 in use, this job needs 2"


def _claim(session: Session, job: Job, limits: TeamLimits = ONE_JOB) -> Job | None:
    return jobs.claim_job(session=session, job_id=job.id, worker="w", limits=limits)


def _waiting_events(session: Session, job: Job) -> list[str]:
    rows = session.scalars(select(JobEvent).where(JobEvent.job_id == job.id, JobEvent.type == "waiting"))
    return [row.message for row in rows]


def test_limits_come_from_settings_and_default_to_none() -> None:
    assert TeamLimits.from_settings(Settings()).unlimited
    limits = TeamLimits.from_settings(Settings(team_max_running_jobs=2, team_max_gpus=4))
    assert (limits.max_running_jobs, limits.max_gpus) == (2, 4)


@pytest.mark.parametrize(
    ("limits", "usage", "gpus", "expected"),
    [
        (TeamLimits(), TeamUsage(50, 50), 8, None),
        (TeamLimits(max_running_jobs=2), TeamUsage(1, 1), 1, None),
        (TeamLimits(max_running_jobs=2), TeamUsage(2, 2), 1, "waiting: team at its limit of 2 running jobs"),
        (TeamLimits(max_running_jobs=1), TeamUsage(1, 1), 1, "waiting: team at its limit of 1 running job"),
        (TeamLimits(max_gpus=4), TeamUsage(1, 2), 2, None),
        (TeamLimits(max_gpus=4), TeamUsage(2, 3), 2, f"waiting: team at its limit of 4 GPUs ({IN_USE_3_NEEDS_2})"),
    ],
)
def test_refusal_names_the_limit(limits: TeamLimits, usage: TeamUsage, gpus: int, expected: str | None) -> None:
    assert refusal(limits=limits, usage=usage, gpus=gpus) == expected


def test_a_job_bigger_than_the_gpu_limit_says_it_waits_for_a_higher_limit() -> None:
    reason = refusal(limits=TeamLimits(max_gpus=2), usage=TeamUsage(), gpus=4)
    assert reason is not None and "asks for 4 GPUs, more than the team's limit of 2 GPUs" in reason


def test_claim_over_the_running_jobs_limit_waits_with_its_reason(session: Session) -> None:
    team = make_team(session)
    first, second = make_job(session, team), make_job(session, team)
    other_team_job = make_job(session)  # another team's job is not held back
    assert _claim(session, first) is not None
    assert _claim(session, second) is None
    assert _claim(session, second) is None  # a re-sent message: same reason, no second event
    assert _claim(session, other_team_job) is not None
    session.refresh(second)
    assert second.status == JobStatus.QUEUED.value and second.attempt == 0
    assert second.waiting_reason == "waiting: team at its limit of 1 running job"
    assert _waiting_events(session, second) == ["waiting: team at its limit of 1 running job"]
    # The sweeper's backstop re-sends it once it has waited requeue_after_s; a refusal restarts that clock.
    session.execute(update(Job).where(Job.id == second.id).values(updated_at=utcnow() - timedelta(minutes=10)))
    assert second.id in {job.id for job in jobs.find_queued_jobs(session=session, older_than=60)}
    assert _claim(session, second) is None
    assert second.id not in {job.id for job in jobs.find_queued_jobs(session=session, older_than=60)}

    assert team_limits.startable(session=session, team_id=team.id, limits=ONE_JOB) == []
    jobs.finish(session=session, job_id=first.id, status=JobStatus.SUCCEEDED)
    assert team_limits.startable(session=session, team_id=team.id, limits=ONE_JOB) == [(second.id, second.queue)]
    claimed = _claim(session, second)
    assert claimed is not None and claimed.status == JobStatus.RUNNING.value and claimed.waiting_reason is None


def test_cancelling_jobs_still_hold_capacity(session: Session) -> None:
    team = make_team(session)
    first, second = make_job(session, team), make_job(session, team)
    assert _claim(session, first) is not None
    jobs.request_cancel(session=session, job_id=first.id)
    assert _claim(session, second) is None
    jobs.finish(session=session, job_id=first.id, status=JobStatus.CANCELLED)
    assert _claim(session, second) is not None


def test_gpu_limit_counts_each_jobs_resources_gpus(session: Session) -> None:
    team = make_team(session)
    limits = TeamLimits(max_gpus=3)
    two: dict[str, Any] = {"resources": {"gpus": 2}}
    big, big_too, small = make_job(session, team, **two), make_job(session, team, **two), make_job(session, team)
    assert _claim(session, big, limits) is not None
    assert _claim(session, big_too, limits) is None
    session.refresh(big_too)
    assert big_too.waiting_reason == "waiting: team at its limit of 3 GPUs (2 in use, this job needs 2)"
    assert _claim(session, small, limits) is not None  # 2 + 1 fits
    jobs.finish(session=session, job_id=big.id, status=JobStatus.FAILED, reason="user", detail="x")
    assert team_limits.startable(session=session, team_id=team.id, limits=limits) == [(big_too.id, big_too.queue)]


def test_startable_keeps_the_oldest_first_and_stops_at_one_that_does_not_fit(session: Session) -> None:
    team = make_team(session)
    limits = TeamLimits(max_gpus=2)
    two: dict[str, Any] = {"resources": {"gpus": 2}}
    running = make_job(session, team, **two)
    assert _claim(session, running, limits) is not None
    waiting = [make_job(session, team), make_job(session, team, **two), make_job(session, team)]
    for job in waiting:
        assert _claim(session, job, limits) is None
    jobs.finish(session=session, job_id=running.id, status=JobStatus.SUCCEEDED)
    # 1 GPU fits, then the 2-GPU job does not (1 + 2 > 2): the scan stops rather than letting the third overtake it.
    assert team_limits.startable(session=session, team_id=team.id, limits=limits) == [(waiting[0].id, "gpu")]


def test_a_waiting_job_that_is_cancelled_shows_no_reason(session: Session) -> None:
    from service.schemas import JobRead

    team = make_team(session)
    first, second = make_job(session, team), make_job(session, team)
    assert _claim(session, first) is not None and _claim(session, second) is None
    session.refresh(second)
    assert JobRead.from_job(second).waiting_reason == "waiting: team at its limit of 1 running job"
    cancelled = jobs.request_cancel(session=session, job_id=second.id)
    assert cancelled.status == "cancelled" and JobRead.from_job(cancelled).waiting_reason is None


# --- two workers, two jobs of one team, at the same moment ------------------------------------------


@pytest.fixture
def committed_team(engine: Engine) -> Iterator[tuple[str, list[str]]]:
    """A team with three queued jobs, committed (each worker below uses its own connection)."""
    factory = session_factory(engine)
    with session_scope(factory) as session:
        team = make_team(session)
        ids = [make_job(session, team).id for _ in range(3)]
        team_id = team.id
    yield team_id, ids


def test_concurrent_claims_of_one_team_never_exceed_the_limit(
    engine: Engine, committed_team: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    team_id, ids = committed_team
    factory = session_factory(engine)
    limits = TeamLimits(max_running_jobs=2)
    real_usage = team_limits.usage
    barrier = threading.Barrier(3)

    def slow_usage(**kwargs: Any) -> TeamUsage:
        # Widen the race: each worker reads the team's usage, then lingers before its compare-and-set.
        # Without the team lock all three would read 0 running jobs and all three would start.
        found = real_usage(**kwargs)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(team_limits, "usage", slow_usage)
    results: dict[str, bool] = {}
    errors: list[BaseException] = []

    def worker(job_id: str) -> None:
        try:
            barrier.wait(timeout=10)
            with session_scope(factory) as session:
                results[job_id] = jobs.claim_job(session=session, job_id=job_id, worker="w", limits=limits) is not None
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(job_id,)) for job_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(results.values()) == [False, True, True]
    with session_scope(factory) as session:
        rows = {job.id: job for job in session.scalars(select(Job).where(Job.team_id == team_id))}
    assert sum(job.status == JobStatus.RUNNING.value for job in rows.values()) == 2
    (refused,) = [job for job in rows.values() if job.status == JobStatus.QUEUED.value]
    assert refused.waiting_reason == "waiting: team at its limit of 2 running jobs"

"""The job state machine: every allowed and forbidden transition, claim, heartbeat, cancel, stale recovery."""

from __future__ import annotations

from datetime import timedelta
from itertools import product

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from service import jobs
from service.errors import InvalidTransition, JobNotFound
from service.models import Job, JobEvent, JobStatus, utcnow
from tests.service.factories import make_job, make_team

ALLOWED = {
    ("queued", "running"),
    ("queued", "cancelled"),
    ("queued", "failed"),
    ("running", "succeeded"),
    ("running", "failed"),
    ("running", "cancelling"),
    ("running", "cancelled"),
    ("running", "queued"),
    ("cancelling", "cancelled"),
    ("cancelling", "failed"),
}
PAIRS = list(product([s.value for s in JobStatus], repeat=2))


def test_table_matches_the_documented_lifecycle() -> None:
    table = {(a.value, b.value) for a, targets in jobs.ALLOWED_TRANSITIONS.items() for b in targets}
    assert table == ALLOWED


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_transition(session: Session, source: str, target: str) -> None:
    job = make_job(session, status=source)
    before = len(jobs.list_events(session=session, job_id=job.id))
    if (source, target) in ALLOWED:
        moved = jobs.transition(session=session, job_id=job.id, to=target, expected_from=source)
        assert moved.status == target
        events = jobs.list_events(session=session, job_id=job.id)
        assert len(events) == before + 1
        assert (events[-1].from_status, events[-1].to_status) == (source, target)
        if target in ("succeeded", "failed", "cancelled"):
            assert moved.finished_at is not None
    else:
        with pytest.raises(InvalidTransition):
            jobs.transition(session=session, job_id=job.id, to=target, expected_from=source)
        with pytest.raises(InvalidTransition):  # also refused when the caller does not name the source
            jobs.transition(session=session, job_id=job.id, to=target)
        assert session.scalar(select(Job.status).where(Job.id == job.id)) == source
        assert len(jobs.list_events(session=session, job_id=job.id)) == before


def test_compare_and_set_refuses_a_stale_expectation(session: Session) -> None:
    job = make_job(session, status="running")
    with pytest.raises(InvalidTransition) as info:
        jobs.transition(session=session, job_id=job.id, to="running", expected_from="queued")
    assert info.value.current == "running"


def test_unknown_job(session: Session) -> None:
    with pytest.raises(JobNotFound):
        jobs.transition(session=session, job_id="nope", to="cancelled")


def test_claim_once(session: Session) -> None:
    job = make_job(session)
    claimed = jobs.claim_job(session=session, job_id=job.id, worker="w1")
    assert claimed is not None and claimed.status == "running" and claimed.attempt == 1
    assert claimed.heartbeat_at is not None and claimed.started_at is not None
    assert jobs.claim_job(session=session, job_id=job.id, worker="w2") is None  # redelivered message: no-op
    assert jobs.get_job(session=session, job_id=job.id).attempt == 1


def test_cancel_queued_is_immediate(session: Session) -> None:
    job = make_job(session)
    cancelled = jobs.request_cancel(session=session, job_id=job.id, team_id=job.team_id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert jobs.claim_job(session=session, job_id=job.id) is None


def test_cancel_running_sets_cancelling(session: Session) -> None:
    job = make_job(session, status="running", attempt=1)
    cancelling = jobs.request_cancel(session=session, job_id=job.id)
    assert cancelling.status == "cancelling" and cancelling.cancel_requested
    assert jobs.request_cancel(session=session, job_id=job.id).status == "cancelling"  # idempotent
    assert jobs.heartbeat(session=session, job_id=job.id, attempt=1) is True  # the worker is told to stop
    done = jobs.finish(session=session, job_id=job.id, status="cancelled")
    assert done.status == "cancelled"


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_cancel_terminal_is_refused(session: Session, status: str) -> None:
    job = make_job(session, status=status)
    with pytest.raises(InvalidTransition):
        jobs.request_cancel(session=session, job_id=job.id)


def test_cancel_is_team_scoped(session: Session) -> None:
    job = make_job(session)
    with pytest.raises(JobNotFound):
        jobs.request_cancel(session=session, job_id=job.id, team_id=make_team(session).id)


def test_heartbeat(session: Session) -> None:
    job = make_job(session, status="running", attempt=2)
    assert jobs.heartbeat(session=session, job_id=job.id, attempt=2) is False
    assert jobs.heartbeat(session=session, job_id=job.id, attempt=1) is True  # an older attempt must stop
    queued = make_job(session)
    assert jobs.heartbeat(session=session, job_id=queued.id) is True


def test_phase_progress_metrics_artifacts_summary(session: Session) -> None:
    job = make_job(session, status="running", attempt=1)
    jobs.set_phase(session=session, job_id=job.id, phase="stage1")
    jobs.set_phase(session=session, job_id=job.id, phase="stage1")  # unchanged: no second event
    jobs.set_progress(session=session, job_id=job.id, progress=1.7, eta_s=12.0, phase="stage2")
    n = jobs.record_metrics(
        session=session,
        job_id=job.id,
        rows=[{"stage": "stage1", "step": s, "epoch": 0, "name": "loss", "value": 1.0 / (s + 1)} for s in range(5)],
    )
    assert n == 5
    assert [m.step for m in jobs.list_metrics(session=session, job_id=job.id, since_step=2)] == [3, 4]
    jobs.add_artifact(
        session=session,
        job_id=job.id,
        name="student.safetensors",
        kind="student",
        size=3,
        sha256="a" * 64,
        storage_key="k1",
    )
    jobs.add_artifact(
        session=session,
        job_id=job.id,
        name="student.safetensors",
        kind="student",
        size=4,
        sha256="b" * 64,
        storage_key="k2",
    )
    assert [(a.size, a.storage_key) for a in jobs.list_artifacts(session=session, job_id=job.id)] == [(4, "k2")]
    done = jobs.finish(session=session, job_id=job.id, status="succeeded", summary={"tgt": {"miou": 0.5}})
    assert (done.status, done.progress, done.phase, done.summary) == (
        "succeeded",
        1.0,
        "stage2",
        {"tgt": {"miou": 0.5}},
    )
    types = [e.type for e in jobs.list_events(session=session, job_id=job.id)]
    assert types.count("phase") == 2


def test_finish_failed_records_reason(session: Session) -> None:
    job = make_job(session, status="running", attempt=1)
    failed = jobs.finish(session=session, job_id=job.id, status="failed", reason="user", detail="bad mask values")
    assert (failed.error_reason, failed.error_detail) == ("user", "bad mask values")
    with pytest.raises(InvalidTransition):
        jobs.finish(session=session, job_id=job.id, status="succeeded")
    with pytest.raises(InvalidTransition):
        jobs.finish(session=session, job_id=make_job(session, status="running").id, status="running")


def test_stale_jobs_requeue_then_fail(session: Session) -> None:
    job = make_job(session)
    job.max_attempts = 2
    session.flush()
    old = utcnow() - timedelta(minutes=10)
    for attempt in (1, 2):
        assert jobs.claim_job(session=session, job_id=job.id) is not None
        session.execute(update(Job).where(Job.id == job.id).values(heartbeat_at=old))
        stale = jobs.find_stale_jobs(session=session, older_than=60)
        assert job.id in [j.id for j in stale]
        result = jobs.requeue_stale(session=session, job_id=job.id)
        assert result == ("queued" if attempt == 1 else "failed")
    final = jobs.get_job(session=session, job_id=job.id)
    assert (final.status, final.error_reason, final.attempt) == ("failed", "infra", 2)


def test_fresh_heartbeat_is_not_stale(session: Session) -> None:
    job = make_job(session)
    jobs.claim_job(session=session, job_id=job.id)
    assert job.id not in [j.id for j in jobs.find_stale_jobs(session=session, older_than=60)]


def test_stale_cancelling_job_becomes_cancelled(session: Session) -> None:
    job = make_job(session, status="cancelling", attempt=1)
    assert jobs.requeue_stale(session=session, job_id=job.id) == "cancelled"


def test_every_transition_writes_an_event_with_attempt(session: Session) -> None:
    job = make_job(session)
    jobs.claim_job(session=session, job_id=job.id)
    jobs.finish(session=session, job_id=job.id, status="succeeded")
    events = list(session.scalars(select(JobEvent).where(JobEvent.job_id == job.id).order_by(JobEvent.id)))
    assert [(e.type, e.to_status, e.attempt) for e in events] == [
        ("created", "queued", 0),
        ("transition", "running", 1),
        ("transition", "succeeded", 1),
    ]

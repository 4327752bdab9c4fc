"""Evaluations run through the jobs' lifecycle: attempts, heartbeat, cancel, stale recovery, re-send."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from service import evaluations, jobs
from service.errors import InvalidTransition
from service.evaluations import EvaluationNotFound
from service.models import Evaluation, Job, utcnow
from service.schemas import DataRef
from tests.service.factories import make_job


def make_evaluation(session: Session, *, max_attempts: int = 3, queue: str = "a100") -> Evaluation:
    job = make_job(session, status="succeeded")
    job.queue = queue
    session.flush()
    return evaluations.create_evaluation(
        session=session, job=job, targets=[DataRef(dataset="x", split="val")], max_attempts=max_attempts
    )


def test_an_evaluation_is_queued_on_its_jobs_queue_with_the_attempt_budget(session: Session) -> None:
    evaluation = make_evaluation(session, max_attempts=4)
    assert (evaluation.status, evaluation.queue, evaluation.max_attempts, evaluation.attempt) == (
        "queued", "a100", 4, 0,
    )  # fmt: skip
    with pytest.raises(InvalidTransition):
        evaluations.create_evaluation(
            session=session, job=make_job(session, status="running"), targets=[DataRef(dataset="x", split="val")]
        )


def test_claim_counts_attempts_and_a_redelivered_message_does_nothing(session: Session) -> None:
    evaluation = make_evaluation(session)
    claimed = evaluations.claim_evaluation(session=session, evaluation_id=evaluation.id, worker="w1@host")
    assert claimed is not None and (claimed.status, claimed.attempt) == ("running", 1)
    assert claimed.heartbeat_at is not None and claimed.started_at is not None
    assert evaluations.claim_evaluation(session=session, evaluation_id=evaluation.id, worker="w2@host") is None
    assert evaluations.heartbeat(session=session, evaluation_id=evaluation.id, attempt=1) is False
    assert evaluations.heartbeat(session=session, evaluation_id=evaluation.id, attempt=0) is True  # superseded


def test_cancel_queued_is_immediate_and_running_goes_through_cancelling(session: Session) -> None:
    queued = make_evaluation(session)
    cancelled = evaluations.request_cancel(session=session, evaluation_id=queued.id, team_id=queued.team_id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert evaluations.claim_evaluation(session=session, evaluation_id=queued.id) is None

    running = make_evaluation(session)
    evaluations.claim_evaluation(session=session, evaluation_id=running.id)
    cancelling = evaluations.request_cancel(session=session, evaluation_id=running.id)
    assert cancelling.status == "cancelling" and cancelling.cancel_requested
    assert evaluations.heartbeat(session=session, evaluation_id=running.id, attempt=1) is True  # told to stop
    done = evaluations.finish_evaluation(session=session, evaluation_id=running.id, status="cancelled")
    assert done.status == "cancelled"
    with pytest.raises(InvalidTransition):
        evaluations.request_cancel(session=session, evaluation_id=running.id)


def test_another_teams_evaluation_is_not_found(session: Session) -> None:
    evaluation = make_evaluation(session)
    other = make_job(session).team_id
    with pytest.raises(EvaluationNotFound):
        evaluations.request_cancel(session=session, evaluation_id=evaluation.id, team_id=other)


def test_a_lost_workers_evaluation_is_requeued_then_fails_infra(session: Session) -> None:
    evaluation = make_evaluation(session, max_attempts=2)
    old = utcnow() - timedelta(minutes=10)
    for attempt in (1, 2):
        assert evaluations.claim_evaluation(session=session, evaluation_id=evaluation.id) is not None
        session.execute(update(Evaluation).where(Evaluation.id == evaluation.id).values(heartbeat_at=old))
        stale = evaluations.find_stale_evaluations(session=session, older_than=60)
        assert [e.id for e in stale] == [evaluation.id]
        assert evaluations.requeue_stale(session=session, evaluation_id=evaluation.id) == (
            "queued" if attempt == 1 else "failed"
        )
    final = evaluations.get_evaluation(session=session, evaluation_id=evaluation.id)
    assert (final.status, final.error_reason, final.attempt) == ("failed", "infra", 2)
    assert final.error is not None and "worker lost on all 2 attempts" in final.error


def test_a_long_queued_evaluation_is_found_for_re_sending(session: Session) -> None:
    evaluation = make_evaluation(session)
    assert evaluations.LIFECYCLE.find_queued(session=session, older_than=60) == []
    session.execute(
        update(Evaluation).where(Evaluation.id == evaluation.id).values(updated_at=utcnow() - timedelta(minutes=5))
    )
    assert [e.id for e in evaluations.LIFECYCLE.find_queued(session=session, older_than=60)] == [evaluation.id]


def test_a_failed_evaluation_keeps_reason_and_message(session: Session) -> None:
    evaluation = make_evaluation(session)
    evaluations.claim_evaluation(session=session, evaluation_id=evaluation.id)
    failed = evaluations.finish_evaluation(
        session=session, evaluation_id=evaluation.id, status="failed", error="ValueError: bad label 300"
    )
    assert (failed.status, failed.error_reason, failed.error) == ("failed", "user", "ValueError: bad label 300")


def test_the_claim_event_names_the_worker_and_the_attempt(session: Session) -> None:
    job = make_job(session)
    session.execute(update(Job).where(Job.id == job.id).values(max_attempts=3))
    jobs.claim_job(session=session, job_id=job.id, worker="gpu-2@node-7")
    claim = [e for e in jobs.list_events(session=session, job_id=job.id) if e.to_status == "running"]
    assert [(e.message, e.attempt) for e in claim] == [("claimed by gpu-2@node-7: attempt 1 of 3", 1)]

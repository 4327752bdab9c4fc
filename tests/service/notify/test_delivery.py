"""The outbox and the deliverer against a real local HTTP receiver (http.server in a thread).

A status change writes its delivery row in the same transaction; the deliverer signs and POSTs it to the
checked address, retries with backoff, never follows a redirect, and records every attempt as a job event.
"""

from __future__ import annotations

import itertools
import json
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from gkd_client import verify_signature
from service import jobs
from service.models import JobStatus, NotificationDelivery
from service.notify import deliverer
from service.notify.deliverer import Deliverer, deliver_due
from service.notify.team_secret import rotate_secret
from service.settings import Settings
from tests.service.factories import make_job, make_team
from tests.service.notify.conftest import Scope
from tests.support.webhook_receiver import Reply, receiver


def _job(scope: Scope, settings: Settings, url: str, events: list[str] | None = None) -> tuple[str, str]:
    """A queued job of a team with a secret, notifying ``url``; returns (job id, secret)."""
    notify: dict[str, Any] = {"url": url}
    if events is not None:
        notify["events"] = events
    with scope() as session:
        team = make_team(session)
        secret, _ = rotate_secret(session=session, team_id=team.id, server_key=settings.secret_key)
        job = make_job(session, team, notify=notify)
        return job.id, secret


def _move(scope: Scope, job_id: str, *targets: JobStatus) -> None:
    for target in targets:
        with scope() as session:
            jobs.transition(session=session, job_id=job_id, to=target)


def _rows(scope: Scope, job_id: str) -> list[NotificationDelivery]:
    with scope() as session:
        query = select(NotificationDelivery).where(NotificationDelivery.job_id == job_id)
        rows = list(session.scalars(query.order_by(NotificationDelivery.created_at)))
        session.expunge_all()
        return rows


def _notes(scope: Scope, job_id: str) -> list[str]:
    with scope() as session:
        return [e.message for e in jobs.list_events(session=session, job_id=job_id) if e.type == "notification"]


def _drain(scope: Scope, settings: Settings, job_id: str, timeout_s: float = 15.0) -> list[NotificationDelivery]:
    """Run the deliverer until the job's rows are all delivered or abandoned."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        deliver_due(scope, settings)
        rows = _rows(scope, job_id)
        if rows and all(r.status != "pending" for r in rows):
            return rows
        time.sleep(0.02)
    raise AssertionError(f"deliveries still pending: {[(r.event, r.attempts, r.last_error) for r in rows]}")


# --- the outbox -------------------------------------------------------------------------------------------


def test_a_listed_change_writes_a_row_in_the_same_transaction(scope: Scope, settings: Settings) -> None:
    job_id, _ = _job(scope, settings, "http://127.0.0.1:9/hook", events=["running", "succeeded"])
    _move(scope, job_id, JobStatus.RUNNING)
    with pytest.raises(RuntimeError), scope() as session:  # a change that rolls back leaves no notification
        jobs.finish(session=session, job_id=job_id, status=JobStatus.SUCCEEDED)
        raise RuntimeError("the caller's transaction fails after the change")
    rows = _rows(scope, job_id)
    assert [(r.event, r.status, r.attempts) for r in rows] == [("running", "pending", 0)]
    body = rows[0].payload
    assert body["type"] == "job.running" and body["id"] == rows[0].id
    assert body["job"]["id"] == job_id and body["job"]["status"] == "running"
    assert body["job"]["previous_status"] == "queued"


def test_unlisted_changes_and_jobs_without_notify_write_nothing(scope: Scope, settings: Settings) -> None:
    job_id, _ = _job(scope, settings, "http://127.0.0.1:9/hook")  # default events: the terminal ones
    _move(scope, job_id, JobStatus.RUNNING, JobStatus.CANCELLING)
    assert _rows(scope, job_id) == []
    _move(scope, job_id, JobStatus.CANCELLED)
    assert [r.event for r in _rows(scope, job_id)] == ["cancelled"]
    with scope() as session:
        plain = make_job(session, make_team(session)).id
    _move(scope, plain, JobStatus.RUNNING, JobStatus.SUCCEEDED)
    assert _rows(scope, plain) == []


def test_the_change_does_not_wait_for_a_dead_receiver(scope: Scope, settings: Settings) -> None:
    job_id, _ = _job(scope, settings, "http://10.255.255.1:81/hook", events=["running"])  # would hang a connect
    started = time.monotonic()
    _move(scope, job_id, JobStatus.RUNNING)
    assert time.monotonic() - started < 4.0  # a connect attempt would take the whole 5 s timeout
    assert [r.status for r in _rows(scope, job_id)] == ["pending"]


# --- delivery ---------------------------------------------------------------------------------------------


def test_delivery_is_signed_and_recorded(scope: Scope, settings: Settings) -> None:
    with receiver() as hook:
        job_id, secret = _job(scope, settings, hook.url("/hook?token=abc"), events=["running", "failed"])
        _move(scope, job_id, JobStatus.RUNNING)
        with scope() as session:
            jobs.finish(session=session, job_id=job_id, status=JobStatus.FAILED, reason="user", detail="bad data")
        rows = _drain(scope, settings, job_id)
        got = hook.wait_for(2)
    assert [r.status for r in rows] == ["delivered", "delivered"]
    for request in got:
        verify_signature(secret, request.headers["gkd-signature"], request.body)  # raises when it does not match
        assert request.path == "/hook?token=abc"
        assert request.headers["content-type"] == "application/json"
    bodies = sorted((json.loads(r.body) for r in got), key=lambda b: b["type"])
    assert [b["type"] for b in bodies] == ["job.failed", "job.running"]
    assert bodies[0]["job"]["error"] == {"reason": "user", "detail": "bad data"}
    notes = _notes(scope, job_id)
    assert len(notes) == 2 and all(": 200 (attempt 1, delivered)" in n for n in notes)
    assert all("token=abc" not in n for n in notes)  # the query may carry the receiver's own secret


def test_host_name_is_resolved_and_pinned_to_the_checked_address(scope: Scope, settings: Settings) -> None:
    with receiver() as hook:
        job_id, secret = _job(scope, settings, hook.url(host="localhost"), events=["running"])
        _move(scope, job_id, JobStatus.RUNNING)
        assert [r.status for r in _drain(scope, settings, job_id)] == ["delivered"]
        (request,) = hook.wait_for(1)
    assert request.headers["host"] == f"localhost:{hook.port}"
    verify_signature(secret, request.headers["gkd-signature"], request.body)


def test_a_receiver_that_fails_twice_then_succeeds(scope: Scope, settings: Settings) -> None:
    with receiver(Reply(503), Reply(500), Reply(204)) as hook:
        job_id, secret = _job(scope, settings, hook.url(), events=["running"])
        _move(scope, job_id, JobStatus.RUNNING)
        (row,) = _drain(scope, settings, job_id)
        got = hook.wait_for(3)
    assert (row.status, row.attempts, row.last_error) == ("delivered", 3, None)
    assert len(got) == 3 and len({r.body for r in got}) == 1  # the same body (and id) on every attempt
    for request in got:
        verify_signature(secret, request.headers["gkd-signature"], request.body)
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert all(gap >= 0.02 for gap in gaps), gaps  # backed off: 0.05 s then 0.1 s, jittered to 50-100 %
    notes = _notes(scope, job_id)
    assert [n.split(": ", 1)[1].split(" (")[0] for n in notes] == ["503", "500", "204"]
    assert "attempt 1, retry in" in notes[0] and "attempt 3, delivered" in notes[2]


def test_a_redirect_is_not_followed(scope: Scope, settings: Settings) -> None:
    with receiver() as elsewhere, receiver(Reply(302, {"Location": "/other"})) as hook:
        target = elsewhere.url("/stolen")
        hook.replies = [Reply(307, {"Location": target})]
        job_id, _ = _job(scope, settings, hook.url(), events=["running"])
        _move(scope, job_id, JobStatus.RUNNING)
        (row,) = _drain(scope, settings, job_id)
        assert len(hook.wait_for(1)) == 1
        time.sleep(0.2)
        assert elsewhere.received == []
    assert (row.status, row.attempts) == ("abandoned", 1)
    (note,) = _notes(scope, job_id)
    assert f"307 redirect to {target} not followed" in note and "abandoned" in note


def test_a_client_error_is_not_retried(scope: Scope, settings: Settings) -> None:
    with receiver(Reply(404)) as hook:
        job_id, _ = _job(scope, settings, hook.url(), events=["running"])
        _move(scope, job_id, JobStatus.RUNNING)
        (row,) = _drain(scope, settings, job_id)
        assert len(hook.received) == 1
    assert (row.status, row.attempts) == ("abandoned", 1)
    assert "404 (not retried: only 5xx, 408, 425 and 429 answers are)" in _notes(scope, job_id)[0]


def test_retries_stop_after_the_retry_window(scope: Scope, settings: Settings) -> None:
    # The window counts from the row's creation: wide enough that a slow first attempt still leaves a retry.
    settings = settings.model_copy(update={"notify_retry_for_s": 3.0})
    with receiver(Reply(503)) as hook:
        job_id, _ = _job(scope, settings, hook.url(), events=["running"])
        _move(scope, job_id, JobStatus.RUNNING)
        (row,) = _drain(scope, settings, job_id)
        attempts = len(hook.received)
    assert row.status == "abandoned" and row.attempts == attempts >= 2
    assert "abandoned: retried for 3 s" in _notes(scope, job_id)[-1]


def test_timeouts_and_refused_connections_are_retried(scope: Scope, settings: Settings) -> None:
    # The retry must finish within the timeout on a slow, busy machine too: 1 s is ample for a loopback POST.
    settings = settings.model_copy(update={"notify_timeout_s": 1.0})
    with receiver(Reply(200, delay_s=3.0), Reply(200)) as hook:
        job_id, _ = _job(scope, settings, hook.url(), events=["running"])
        _move(scope, job_id, JobStatus.RUNNING)
        (row,) = _drain(scope, settings, job_id)
    assert (row.status, row.attempts) == ("delivered", 2)
    assert "timed out after 1 s" in _notes(scope, job_id)[0]
    with receiver() as closed:
        url = closed.url()
    job_id, _ = _job(scope, settings.model_copy(update={"notify_retry_for_s": 0.3}), url, events=["running"])
    _move(scope, job_id, JobStatus.RUNNING)
    (row,) = _drain(scope, settings.model_copy(update={"notify_retry_for_s": 0.3}), job_id)
    assert row.status == "abandoned" and "ConnectError" in (row.last_error or "")


def test_a_huge_answer_is_not_read_to_the_end(scope: Scope, settings: Settings) -> None:
    with receiver(Reply(200, body=b"x" * (64 << 20))) as hook:
        job_id, _ = _job(scope, settings, hook.url(), events=["running"])
        _move(scope, job_id, JobStatus.RUNNING)
        started = time.monotonic()
        (row,) = _drain(scope, settings, job_id)
    assert row.status == "delivered" and time.monotonic() - started < 5


def test_the_address_is_checked_again_at_send_time(scope: Scope, settings: Settings) -> None:
    """The URL passed at submit (private allowed then, or a DNS answer that has changed since): the send
    re-resolves and refuses a private address, and nothing reaches it."""
    with receiver() as hook:
        job_id, _ = _job(scope, settings, hook.url(), events=["running"])
        _move(scope, job_id, JobStatus.RUNNING)
        strict = settings.model_copy(update={"notify_allow_private": False})
        (row,) = _drain(scope, strict, job_id)
        time.sleep(0.1)
        assert hook.received == []
    assert (row.status, row.attempts) == ("abandoned", 1)
    assert "refused: 127.0.0.1 is a loopback address" in _notes(scope, job_id)[0]


def test_a_rotated_secret_signs_the_retries(scope: Scope, settings: Settings) -> None:
    with receiver(Reply(503), Reply(200)) as hook:
        job_id, old = _job(scope, settings, hook.url(), events=["running"])
        _move(scope, job_id, JobStatus.RUNNING)
        deliver_due(scope, settings)
        first = hook.wait_for(1)[0]
        with scope() as session:
            team_id = jobs.get_job(session=session, job_id=job_id).team_id
            new, _ = rotate_secret(session=session, team_id=team_id, server_key=settings.secret_key)
        _drain(scope, settings, job_id)
        second = hook.wait_for(2)[1]
    verify_signature(old, first.headers["gkd-signature"], first.body)
    verify_signature(new, second.headers["gkd-signature"], second.body)


def test_a_claimed_row_is_not_sent_twice(scope: Scope, settings: Settings) -> None:
    job_id, _ = _job(scope, settings, "http://127.0.0.1:9/hook", events=["running"])
    _move(scope, job_id, JobStatus.RUNNING)
    assert len(deliverer._claim(scope, settings, 10)) == 1
    assert deliverer._claim(scope, settings, 10) == []  # leased: another worker's deliverer skips it


def test_the_deliverer_thread_sends_in_the_background(scope: Scope, settings: Settings) -> None:
    with receiver() as hook:
        thread = Deliverer(scope, settings).start()
        try:
            job_id, secret = _job(scope, settings, hook.url(), events=["running", "succeeded"])
            _move(scope, job_id, JobStatus.RUNNING, JobStatus.SUCCEEDED)
            got = hook.wait_for(2, timeout_s=10)
        finally:
            thread.stop()
    assert sorted(json.loads(r.body)["type"] for r in got) == ["job.running", "job.succeeded"]
    for request in got:
        verify_signature(secret, request.headers["gkd-signature"], request.body)


def test_finished_rows_are_pruned_after_a_while(scope: Scope, settings: Settings) -> None:
    with receiver() as hook:
        job_id, _ = _job(scope, settings, hook.url(), events=["running", "succeeded"])
        _move(scope, job_id, JobStatus.RUNNING)
        _drain(scope, settings, job_id)
    _move(scope, job_id, JobStatus.SUCCEEDED)  # still pending: never pruned
    assert deliverer.prune(scope) == 0
    assert deliverer.prune(scope, older_than=timedelta(seconds=-60)) == 1
    assert [r.status for r in _rows(scope, job_id)] == ["pending"]
    assert len(_notes(scope, job_id)) == 1  # the attempt's event stays

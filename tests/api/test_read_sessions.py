"""Reads never wait for the write lock (issue 15's embedded stall).

Every SQLite transaction used to begin IMMEDIATE, so each GET took the database's one write lock for the
whole request: reads queued behind each other and behind the worker's writes, polling SQLite's busy
handler (sleeps of up to 100 ms, a 30 s timeout). GET and HEAD now get read-only sessions. Each test
holds a write transaction open on another connection and needs the read to answer meanwhile; with reads
on the write lock again, the read would wait out the busy timeout and the test fails after 5 s.
"""

from __future__ import annotations

import concurrent.futures
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, select, update

from service.models import Job
from tests.api.conftest import ApiEnv, TeamClient
from tests.service.factories import spec_dict

ANSWER_WITHIN_S = 5.0


@contextmanager
def writer_holding_lock(env: ApiEnv, job_id: str) -> Iterator[Connection]:
    """A connection with an uncommitted UPDATE of the job: it holds the write lock (row lock on PostgreSQL)."""
    with env.app.state.engine.connect() as conn:
        conn.execute(update(Job).where(Job.id == job_id).values(name="being-written"))
        try:
            yield conn
        finally:
            conn.rollback()


def answered_meanwhile(call: Callable[[], Any]) -> Any:
    """Run ``call`` on another thread; fail unless it returns within ANSWER_WITHIN_S."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(call)
        try:
            return future.result(timeout=ANSWER_WITHIN_S)
        except concurrent.futures.TimeoutError:
            pytest.fail(f"the read waited more than {ANSWER_WITHIN_S} s for another connection's write transaction")


def test_get_routes_answer_while_another_connection_writes(api: ApiEnv, ready_team: TeamClient) -> None:
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    with writer_holding_lock(api, job_id):
        for path in (f"/v1/jobs/{job_id}", "/v1/jobs", f"/v1/jobs/{job_id}/events", "/v1/datasets"):
            response = answered_meanwhile(functools.partial(ready_team.get, path))
            assert response.status_code == 200, (path, response.text)
        job = answered_meanwhile(lambda: ready_team.get(f"/v1/jobs/{job_id}")).json()
        assert job["name"] == "tiny", "a read saw another connection's uncommitted write"
    assert ready_team.get(f"/v1/jobs/{job_id}").status_code == 200


def test_read_sessions_refuse_writes(api: ApiEnv, ready_team: TeamClient) -> None:
    """The read-only session is enforced by the database, so a GET route that wrote would fail loudly."""
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    with api.app.state.read_session_factory() as session:
        assert session.scalar(select(Job.name).where(Job.id == job_id)) == "tiny"
        with pytest.raises(Exception, match=r"(?i)read-?only|readonly"):
            session.execute(update(Job).where(Job.id == job_id).values(name="written-by-a-read"))
            session.flush()
        session.rollback()
    with api.app.state.session_factory() as session:
        assert session.scalar(select(Job.name).where(Job.id == job_id)) == "tiny"


def test_writes_still_serialise_behind_the_write_lock(api: ApiEnv, ready_team: TeamClient) -> None:
    """POST keeps its writing session: a cancel submitted while another write is open waits, then applies."""
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    with concurrent.futures.ThreadPoolExecutor(1) as pool, writer_holding_lock(api, job_id) as writer:
        cancel = pool.submit(lambda: ready_team.post(f"/v1/jobs/{job_id}/cancel"))
        with pytest.raises(concurrent.futures.TimeoutError):
            cancel.result(timeout=0.5)
        writer.rollback()
        response = cancel.result(timeout=30)
    assert response.status_code == 202, response.text
    assert ready_team.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"

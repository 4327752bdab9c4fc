"""GET /v1/jobs/{id}/logs: each attempt's stored training log, listed and read (the tail if asked), only by
the job's team."""

from __future__ import annotations

from pathlib import Path

from service import jobs as job_service
from service.db import session_scope
from service.storage import LocalStore
from service.training_logs import log_key, read_tail
from tests.api.conftest import ApiEnv, TeamClient
from tests.service.factories import spec_dict


def test_logs_are_listed_and_read_by_attempt(
    api: ApiEnv, ready_team: TeamClient, other_team: TeamClient, tmp_path: Path
) -> None:
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    api.app.state.store = store = LocalStore(tmp_path / "store")
    assert ready_team.get(f"/v1/jobs/{job_id}/logs").json() == {"items": []}
    first = "".join(f"step {i}\n" for i in range(5)) + "Traceback (most recent call last):\nRuntimeError: boom\n"
    store.put_bytes(log_key(job_id, 1), first.encode())
    store.put_bytes(log_key(job_id, 2), b"step 0\n")
    store.put_bytes(f"jobs/{job_id}/logs/notes.txt", b"not a log")  # anything else under the prefix is ignored
    listed = ready_team.get(f"/v1/jobs/{job_id}/logs").json()["items"]
    assert listed == [{"attempt": 1, "size": len(first)}, {"attempt": 2, "size": 7}]
    whole = ready_team.get(f"/v1/jobs/{job_id}/logs/1")
    assert whole.status_code == 200 and whole.headers["content-type"].startswith("text/plain")
    assert whole.text == first
    tail = ready_team.get(f"/v1/jobs/{job_id}/logs/1", params={"tail_lines": 2}).text
    assert tail == "Traceback (most recent call last):\nRuntimeError: boom\n"
    missing = ready_team.get(f"/v1/jobs/{job_id}/logs/3")
    assert missing.status_code == 404 and "lists them" in missing.json()["detail"]
    assert other_team.get(f"/v1/jobs/{job_id}/logs").status_code == 404
    assert other_team.get(f"/v1/jobs/{job_id}/logs/1").status_code == 404
    with session_scope(api.app.state.session_factory) as session:
        job_service.request_cancel(session=session, job_id=job_id)
    assert ready_team.client_delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not store.exists(log_key(job_id, 1)), "a deleted job's logs go with its other objects"


def test_a_long_log_keeps_its_end_from_a_line_boundary(tmp_path: Path) -> None:
    path = tmp_path / "ranks.log"
    path.write_bytes(b"".join(f"line {i:05d}\n".encode() for i in range(10_000)))  # 110,000 bytes
    kept = read_tail(path, 1000)
    assert kept.startswith(b"line ") and kept.endswith(b"line 09999\n") and len(kept) <= 1000
    assert read_tail(path, 10**9) == path.read_bytes()

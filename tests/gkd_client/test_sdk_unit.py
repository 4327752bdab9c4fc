"""SDK behaviour that a healthy server never shows: retries, error bodies, redirects to another host."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gkd_client import APIError, Artifact, ChecksumError, Client, Job, NotFoundError, TransportError, ValidationError

JOB = {"id": "j1", "name": "n", "status": "queued", "spec": {"method": "gkd"}, "created_at": "2025-01-01T00:00:00Z"}


def _client(handler: httpx.MockTransport, **kwargs: object) -> Client:
    return Client("http://api.test", "gkd_key", transport=handler, backoff_s=0.0, **kwargs)  # type: ignore[arg-type]


def test_get_is_retried_after_503_then_succeeds() -> None:
    calls: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) < 3:
            return httpx.Response(503, json={"title": "Service Unavailable"})
        return httpx.Response(200, json=JOB)

    job = _client(httpx.MockTransport(handle)).get_job("j1")
    assert job.id == "j1" and len(calls) == 3


def test_post_without_idempotency_key_is_not_retried() -> None:
    calls: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, json={"title": "Service Unavailable", "status": 503})

    client = _client(httpx.MockTransport(handle))
    with pytest.raises(APIError) as info:
        client.submit_job({"name": "x"})
    assert info.value.status == 503 and len(calls) == 1

    calls.clear()
    with pytest.raises(APIError):
        client.submit_job({"name": "x"}, idempotency_key="k1")
    assert len(calls) == 4  # 1 + 3 retries, each with the same key
    assert {c.headers["Idempotency-Key"] for c in calls} == {"k1"}


def test_problem_json_fields_are_carried_by_the_exception() -> None:
    body = {
        "type": "https://gkd.dev/problems/validation",
        "title": "Validation failed",
        "status": 422,
        "detail": "2 problems",
        "errors": [
            {"loc": ["body", "stage1", "steps"], "msg": "must be >= 1", "type": "greater_than_equal"},
            {"field": "targets[0]", "message": "unknown dataset", "fix": "register it first"},
        ],
    }

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(422, json=body, headers={"content-type": "application/problem+json"})

    with pytest.raises(ValidationError) as info:
        _client(httpx.MockTransport(handle)).submit_job({})
    err = info.value
    assert (err.status, err.title, err.detail, err.type) == (422, "Validation failed", "2 problems", body["type"])
    assert [e.field for e in err.errors] == ["stage1.steps", "targets[0]"]
    assert "register it first" in err.errors[1].msg
    assert "stage1.steps: must be >= 1" in str(err)


def test_404_maps_to_not_found_and_non_json_bodies_still_explain() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(502, text="<html>bad gateway</html>")
        return httpx.Response(404, json={"title": "Not Found", "status": 404, "detail": "no job 'x'"})

    client = _client(httpx.MockTransport(handle), retries=0)
    with pytest.raises(NotFoundError, match="no job 'x'"):
        client.get_job("x")
    with pytest.raises(APIError, match="bad gateway"):
        client.events("x")


def test_connection_refused_becomes_transport_error() -> None:
    client = Client("http://127.0.0.1:9", "k", retries=1, backoff_s=0.0, timeout=2.0)
    with pytest.raises(TransportError, match="cannot reach"):
        client.list_jobs()


def test_iter_jobs_follows_page_tokens() -> None:
    pages = {None: (["a", "b"], "t1"), "t1": (["c"], "t2"), "t2": ([], None)}

    def handle(request: httpx.Request) -> httpx.Response:
        ids, token = pages[request.url.params.get("page_token")]
        assert request.url.params["status"] == "running"
        return httpx.Response(200, json={"items": [dict(JOB, id=i) for i in ids], "next_page_token": token})

    jobs = list(_client(httpx.MockTransport(handle)).iter_jobs(status="running", page_size=2))
    assert [j.id for j in jobs] == ["a", "b", "c"]


def test_job_model_reads_nested_error_and_summary() -> None:
    job = Job.from_obj(
        dict(
            JOB,
            status="failed",
            error={"reason": "user", "detail": "bad data"},
            summary={"student": {"fog": {"miou": 0.4}}, "references": {"teacher": {"fog": 0.5}}},
        )
    )
    assert job.terminal and job.error_reason == "user" and job.error_detail == "bad data"
    assert job.summary.student["fog"].miou == 0.4 and job.summary.references["teacher"]["fog"].miou == 0.5


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A stand-in object store on another host (port): records headers, serves fixed bytes."""

    payload = b"weights" * 1000
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def object_store() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Recorder.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_follows_redirect_without_leaking_the_key(object_store: str, tmp_path: Path) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == "Bearer gkd_key"
        return httpx.Response(307, headers={"Location": f"{object_store}/bucket/student.safetensors?sig=abc"})

    client = _client(httpx.MockTransport(handle))
    digest = hashlib.sha256(_Recorder.payload).hexdigest()
    artifact = Artifact(job_id="j1", name="student.safetensors", kind="student", size=None, sha256=digest)
    progress: list[int] = []
    path = client.download(artifact, tmp_path, progress=lambda done, total: progress.append(done))
    assert path == tmp_path / "student.safetensors" and path.read_bytes() == _Recorder.payload
    assert progress[-1] == len(_Recorder.payload)
    assert len(_Recorder.seen) == 1 and "Authorization" not in _Recorder.seen[0]

    bad = Artifact(job_id="j1", name="other.bin", kind="student", size=None, sha256="0" * 64)
    with pytest.raises(ChecksumError, match="does not match"):
        client.download(bad, tmp_path / "other.bin")
    assert not (tmp_path / "other.bin").exists() and not (tmp_path / "other.bin.part").exists()


def test_json_output_of_problem_has_no_traceback_shape() -> None:
    err = APIError.from_response(409, {"title": "Conflict", "detail": "job is already succeeded"})
    assert json.loads(json.dumps({"msg": str(err)}))["msg"] == "409 Conflict: job is already succeeded"

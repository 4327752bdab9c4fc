"""Jobs over HTTP: submit, validation problems, idempotency, listing, cancel, events, metrics, artifacts."""

from __future__ import annotations

import concurrent.futures
import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service import jobs as job_service
from service.db import session_scope
from service.storage import LocalStore, StorageUnavailable
from tests.api.conftest import ApiEnv, TeamClient
from tests.service.factories import spec_dict

PROBLEM = "application/problem+json"


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_submit_commits_then_enqueues(api: ApiEnv, ready_team: TeamClient) -> None:
    response = ready_team.post("/v1/jobs", json=spec_dict())
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["status"] == "queued" and job["progress"] == 0 and job["spec"]["method"] == "gkd"
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert api.enqueuer.jobs[-1] == job["id"] and api.enqueuer.committed[-1] is True
    assert ready_team.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
    events = ready_team.get(f"/v1/jobs/{job['id']}/events").json()["items"]
    assert [e["type"] for e in events] == ["created"]


@pytest.mark.parametrize(
    ("changes", "field", "needle"),
    [
        ({"teacher": {"model": "vit_base_patch14_dinov3x"}}, "teacher.model", "vit_base_patch14_dinov2"),
        ({"student": {"model": "deit_tiny_patch16_225"}}, "student.model", "deit_tiny_patch16_224"),
        ({"teacher": {"model": "test_resnet"}}, "teacher.model", "cannot be matched"),
        ({"source": {"dataset": "unknown", "split": "train"}}, "source.dataset", "not registered"),
        ({"targets": [{"dataset": "src", "split": "train"}]}, "targets", "equals the source"),
        ({"stage1": {"steps": 0}}, "stage1.steps", "greater than or equal to 1"),
        ({"stage1": {"batch_size": 100000}}, "stage1.batch_size", "less than or equal to 4096"),
        ({"stage1": {"image_size": 8}}, "stage1.image_size", "16"),
        ({"stage1": {"image_size": 40}}, "stage1.image_size", "use 32 or 48"),
        ({"surprise": 1}, "surprise", "remove this field"),
        ({"teacher": {"model": "test_vit", "colour": "red"}}, "teacher.colour", "remove this field"),
        ({"method": "magic"}, "method", "gkd"),
        ({"method": "kd", "stage1": {"steps": 5}}, "stage1", "has no stage1, so the stage1 block would be ignored"),
        ({"teacher": {"model": "test_vit", "weights": "http://x"}}, "teacher.weights", "s3://"),
    ],
)
def test_spec_problems_are_422_naming_field_and_fix(
    api: ApiEnv, ready_team: TeamClient, changes: dict, field: str, needle: str
) -> None:
    before = len(api.enqueuer.jobs)
    body = _problem(ready_team.post("/v1/jobs", json=spec_dict(**changes)), 422)
    match = [e for e in body["errors"] if e["field"] == field]
    assert match, body["errors"]
    assert all(e["fix"] for e in body["errors"])
    assert needle in (match[0]["message"] + " " + match[0]["fix"] + " " + str(match[0].get("close_matches")))
    assert len(api.enqueuer.jobs) == before


def test_invalid_dataset_is_refused_with_its_report(ready_team: TeamClient) -> None:
    ready_team.register("broken", bad=True)
    body = _problem(ready_team.post("/v1/jobs", json=spec_dict(targets=[{"dataset": "broken", "split": "val"}])), 422)
    error = next(e for e in body["errors"] if e["field"] == "targets[0].dataset")
    assert error["report"]["problems"][0]["kind"] == "bad_label"


def test_bad_bodies(api: ApiEnv, team: TeamClient) -> None:
    _problem(team.post("/v1/jobs", content=b"{nope", headers={"content-type": "application/json"}), 400)
    _problem(team.post("/v1/jobs", content=b"name=x", headers={"content-type": "text/plain"}), 415)
    _problem(team.post("/v1/jobs", content=b"{}", headers={"content-type": "application/x-www-form-urlencoded"}), 415)
    big = b'{"name": "' + b"x" * 70_000 + b'"}'
    _problem(team.post("/v1/jobs", content=big, headers={"content-type": "application/json"}), 413)

    def chunks():  # no Content-Length: the streamed size is counted
        for _ in range(10):
            yield b" " * 10_000

    _problem(team.post("/v1/jobs", content=chunks(), headers={"content-type": "application/json"}), 413)
    _problem(team.post("/v1/jobs", json=[1, 2]), 422)
    _problem(team.post("/v1/jobs", json=None), 422)


def test_idempotency(api: ApiEnv, ready_team: TeamClient) -> None:
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = ready_team.post("/v1/jobs", json=spec_dict(), headers=key)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    again = ready_team.post("/v1/jobs", json=spec_dict(), headers=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert api.enqueuer.jobs.count(first.json()["id"]) == 1
    _problem(ready_team.post("/v1/jobs", json=spec_dict(name="other"), headers=key), 409)
    _problem(ready_team.post("/v1/jobs", json=spec_dict(), headers={"Idempotency-Key": "k" * 300}), 400)


def test_idempotency_key_is_per_team(ready_team: TeamClient, other_team: TeamClient) -> None:
    other_team.register("src")
    other_team.register("tgt")
    key = {"Idempotency-Key": "shared-key"}
    a = ready_team.post("/v1/jobs", json=spec_dict(), headers=key).json()["id"]
    b = other_team.post("/v1/jobs", json=spec_dict(), headers=key).json()["id"]
    assert a != b


def test_concurrent_duplicates_create_one_job(api: ApiEnv, ready_team: TeamClient) -> None:
    if api.backend != "postgresql":
        pytest.skip("row-level races need a server database; SQLite serialises every writer")
    key = {"Idempotency-Key": str(uuid.uuid4())}

    def submit(_: int) -> tuple[int, str]:
        # The shared client: its one event loop serves all eight threads' requests concurrently, as uvicorn
        # would. A TestClient per thread ran the app on eight loops, and the app's per-loop primitives (the
        # session slots and the closing limiter) could then wake a waiter on another loop: a rare hang.
        r = api.client.post("/v1/jobs", json=spec_dict(), headers={**ready_team.headers, **key})
        return r.status_code, r.json().get("id", r.text)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(submit, range(8)))
    assert {status for status, _ in results} == {201}, results
    assert len({job_id for _, job_id in results}) == 1
    page = ready_team.get("/v1/jobs", params={"page_size": 100}).json()["items"]
    assert sum(1 for j in page if j["id"] == results[0][1]) == 1
    with session_scope(api.app.state.session_factory) as session:
        assert (
            job_service.find_by_idempotency_key(
                session=session, team_id=_team_id(api, ready_team), key=key["Idempotency-Key"]
            )
            is not None
        )


def _team_id(api: ApiEnv, team: TeamClient) -> str:
    from service.auth import authenticate

    with session_scope(api.app.state.session_factory) as session:
        return authenticate(session=session, key=team.key).id


def test_listing_filters_pages_and_tokens(api: ApiEnv, ready_team: TeamClient) -> None:
    ids = [
        ready_team.post(
            "/v1/jobs", json=spec_dict(method="kd" if i % 2 else "gkd", teacher={"model": "test_vit"})
        ).json()["id"]
        for i in range(5)
    ]
    ready_team.post(f"/v1/jobs/{ids[0]}/cancel")
    seen, token = [], None
    while True:
        params = {"method": "gkd", "page_size": 1, **({"page_token": token} if token else {})}
        page = ready_team.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in page["items"]]
        token = page["next_page_token"]
        if token is None:
            break
    assert seen == [ids[4], ids[2], ids[0]]  # newest first; filter applied before the limit
    queued = ready_team.get("/v1/jobs", params={"status": "queued", "method": "gkd"}).json()["items"]
    assert [j["id"] for j in queued] == [ids[4], ids[2]]
    both = ready_team.get("/v1/jobs", params=[("status", "queued"), ("status", "cancelled")]).json()["items"]
    assert len(both) == 5
    created = ready_team.get(f"/v1/jobs/{ids[2]}").json()["created_at"]
    after = ready_team.get("/v1/jobs", params={"created_after": created}).json()["items"]
    assert [j["id"] for j in after] == [ids[4], ids[3]]
    first = ready_team.get("/v1/jobs", params={"page_size": 2}).json()
    token = first["next_page_token"]
    _problem(ready_team.get("/v1/jobs", params={"page_size": 2, "page_token": token[:-2] + "xx"}), 400)
    _problem(ready_team.get("/v1/jobs", params={"page_size": 2, "page_token": "garbage"}), 400)
    _problem(ready_team.get("/v1/jobs", params={"page_size": 2, "page_token": token, "method": "kd"}), 400)
    _problem(ready_team.get("/v1/jobs", params={"page_size": 5000}), 422)
    _problem(ready_team.get("/v1/jobs", params={"status": "sleeping"}), 422)


def test_cancel(ready_team: TeamClient, api: ApiEnv) -> None:
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    response = ready_team.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelled"
    _problem(ready_team.post(f"/v1/jobs/{job_id}/cancel"), 409)
    running = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=running)
    response = ready_team.post(f"/v1/jobs/{running}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "cancelling"
    assert response.json()["cancel_requested"] is True


class PresigningStore(LocalStore):
    """A local folder that answers downloads with presigned URLs, the way S3Store does."""

    def presigned_url(self, key: str, expires_s: int, *, filename: str | None = None) -> str | None:
        return f"https://s3.example/{key}?expires={expires_s}&filename={filename}"


class UnreachableStore(LocalStore):
    """A store whose server cannot be reached."""

    def presigned_url(self, key: str, expires_s: int, *, filename: str | None = None) -> str | None:
        raise StorageUnavailable("injected: cannot reach the object store")


def test_worker_progress_is_visible(api: ApiEnv, ready_team: TeamClient, tmp_path: Path) -> None:
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    payload = b"student weights"
    LocalStore(tmp_path).put_bytes("jobs/student.safetensors", payload)
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
        job_service.set_progress(session=session, job_id=job_id, progress=0.25, eta_s=30, phase="stage1")
        job_service.record_metrics(
            session=session,
            job_id=job_id,
            rows=[{"stage": "stage1", "step": s, "epoch": 0, "name": "loss", "value": 2.0 - s / 10} for s in range(4)],
        )
        job_service.add_artifact(
            session=session,
            job_id=job_id,
            name="student.safetensors",
            kind="student",
            size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(),
            storage_key="jobs/student.safetensors",
        )
    job = ready_team.get(f"/v1/jobs/{job_id}").json()
    assert (job["status"], job["phase"], job["progress"], job["eta_s"], job["attempt"]) == (
        "running",
        "stage1",
        0.25,
        30,
        1,
    )
    metrics = ready_team.get(f"/v1/jobs/{job_id}/metrics", params={"since_step": 1}).json()
    assert [m["step"] for m in metrics["items"]] == [2, 3] and metrics["last_step"] == 3
    artifacts = ready_team.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]
    assert artifacts[0]["name"] == "student.safetensors" and artifacts[0]["size"] == len(payload)
    api.app.state.store = LocalStore(tmp_path)
    download = ready_team.get(f"/v1/jobs/{job_id}/artifacts/student.safetensors")
    assert download.status_code == 200 and download.content == payload
    assert download.headers["x-checksum-sha256"] == hashlib.sha256(payload).hexdigest()
    assert download.headers["content-disposition"] == 'attachment; filename="student.safetensors"'
    local_link = ready_team.get(f"/v1/jobs/{job_id}/artifacts/student.safetensors:link").json()
    assert local_link == {
        "name": "student.safetensors",
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
        "url": f"/v1/jobs/{job_id}/artifacts/student.safetensors",  # no URLs here: the key is needed
        "requires_key": True,
        "expires_at": None,
    }
    assert ready_team.get(local_link["url"]).content == payload
    api.app.state.store = PresigningStore(tmp_path)
    redirect = ready_team.get(f"/v1/jobs/{job_id}/artifacts/student.safetensors", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"].startswith("https://s3.example/jobs/")
    assert redirect.headers["location"].endswith("&filename=student.safetensors")  # saved under its own name
    assert redirect.headers["x-checksum-sha256"] == hashlib.sha256(payload).hexdigest()
    before = datetime.now(UTC)
    link = ready_team.get(f"/v1/jobs/{job_id}/artifacts/student.safetensors:link").json()
    assert link["url"] == "https://s3.example/jobs/student.safetensors?expires=3600&filename=student.safetensors"
    assert link["requires_key"] is False and link["sha256"] == hashlib.sha256(payload).hexdigest()
    expires_in = datetime.fromisoformat(link["expires_at"]) - before
    assert timedelta(seconds=3599) <= expires_in <= timedelta(seconds=3610)
    api.app.state.store = UnreachableStore(tmp_path)
    for route in ("student.safetensors", "student.safetensors:link"):
        down = _problem(ready_team.get(f"/v1/jobs/{job_id}/artifacts/{route}"), 503)
        assert down["title"] == "Storage unavailable" and "cannot reach the object store" in down["detail"]
    _problem(ready_team.get(f"/v1/jobs/{job_id}/artifacts/missing.onnx"), 404)
    _problem(ready_team.get(f"/v1/jobs/{job_id}/artifacts/missing.onnx:link"), 404)
    _problem(ready_team.get(f"/v1/jobs/{job_id}/metrics", params={"since_step": "x"}), 422)


def test_the_page_size_limit_is_the_servers_setting(api: ApiEnv, ready_team: TeamClient) -> None:
    for _ in range(3):
        assert ready_team.post("/v1/jobs", json=spec_dict()).status_code == 201
    original = api.app.state.settings
    api.app.state.settings = original.model_copy(update={"max_page_size": 2})
    try:
        page = ready_team.get("/v1/jobs", params={"page_size": 3}).json()  # served at the limit
        assert len(page["items"]) == 2 and page["next_page_token"]
        rest = ready_team.get("/v1/jobs", params={"page_size": 3, "page_token": page["next_page_token"]}).json()
        assert len(rest["items"]) == 1 and rest["next_page_token"] is None
        api.app.state.settings = original.model_copy(update={"max_page_size": 500})
        assert len(ready_team.get("/v1/jobs", params={"page_size": 200}).json()["items"]) == 3  # the setting, not 100
    finally:
        api.app.state.settings = original


def test_metrics_are_read_with_a_cursor_across_stages_page_by_page(api: ApiEnv, ready_team: TeamClient) -> None:
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]

    def log(stage: str, steps: range) -> None:
        rows = [{"stage": stage, "step": s, "epoch": 0, "name": "loss", "value": float(s)} for s in steps]
        with session_scope(api.app.state.session_factory) as session:
            job_service.record_metrics(session=session, job_id=job_id, rows=rows)

    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
    log("stage1b", range(1, 6))
    log("stage2", range(1, 4))  # each stage counts its steps from 1: a step cannot be the cursor
    url = f"/v1/jobs/{job_id}/metrics"
    first = ready_team.get(url, params={"after": 0, "limit": 4}).json()
    assert [(m["stage"], m["step"]) for m in first["items"]] == [("stage1b", s) for s in range(1, 5)]
    assert first["more"] is True and first["next_after"] > 0
    rest = ready_team.get(url, params={"after": first["next_after"], "limit": 4}).json()
    expected = [("stage1b", 5), ("stage2", 1), ("stage2", 2), ("stage2", 3)]
    assert [(m["stage"], m["step"]) for m in rest["items"]] == expected
    assert rest["more"] is False
    idle = ready_team.get(url, params={"after": rest["next_after"]}).json()
    assert idle["items"] == [] and idle["next_after"] == rest["next_after"] and idle["more"] is False
    log("stage2", range(4, 6))
    news = ready_team.get(url, params={"after": idle["next_after"]}).json()
    assert [m["step"] for m in news["items"]] == [4, 5]

    tail = ready_team.get(url, params={"tail": 2}).json()
    assert [(m["stage"], m["step"]) for m in tail["items"]] == [("stage2", 4), ("stage2", 5)]
    assert tail["next_after"] == news["next_after"]
    staged = ready_team.get(url, params={"stage": "stage1b", "since_step": 3}).json()
    assert [(m["stage"], m["step"]) for m in staged["items"]] == [("stage1b", 4), ("stage1b", 5)]
    old_style = ready_team.get(url, params={"limit": 3}).json()  # no cursor: step order, as before
    assert [m["step"] for m in old_style["items"]] == [1, 1, 2] and old_style["more"] is True
    assert old_style["next_after"] is None
    _problem(ready_team.get(url, params={"tail": 2, "after": 0}), 422)


def test_a_stored_spec_another_release_wrote_is_still_readable(api: ApiEnv, ready_team: TeamClient) -> None:
    from sqlalchemy import update

    from service.models import Job

    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        spec = {**job_service.get_job(session=session, job_id=job_id).spec, "stage3": {"steps": 5}}
        session.execute(update(Job).where(Job.id == job_id).values(spec=spec))
    read = ready_team.get(f"/v1/jobs/{job_id}")
    assert read.status_code == 200, read.text
    assert read.json()["plan"] is None and read.json()["spec"]["stage3"] == {"steps": 5}
    assert job_id in [j["id"] for j in ready_team.get("/v1/jobs").json()["items"]]

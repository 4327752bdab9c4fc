"""Auth on every route, team isolation on every resource route, datasets, evaluations, health, metrics, OpenAPI."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select, update

import gkd_catalog
from service import evaluations
from service import jobs as job_service
from service.auth import create_api_key
from service.db import session_scope
from service.models import Job, JobEvent, WorkerSlots, utcnow
from service.schemas import DataRef
from tests.api.conftest import ApiEnv, TeamClient
from tests.service.factories import spec_dict


def _routes(api: ApiEnv) -> list[tuple[str, str]]:
    schema = api.client.get("/openapi.json").json()
    return [(method.upper(), path) for path, ops in schema["paths"].items() for method in ops]


def test_every_route_but_healthz_needs_a_key(api: ApiEnv) -> None:
    routes = _routes(api)
    assert len(routes) >= 16
    for method, path in routes:
        url = path.replace("{job_id}", "x").replace("{evaluation_id}", "x").replace("{name}", "x")
        url = url.replace("{name:path}", "x")
        for headers in ({}, {"Authorization": "Bearer gkd_000000000000_" + "x" * 43}, {"Authorization": "Basic a"}):
            response = api.client.request(method, url, headers=headers, json={} if method == "POST" else None)
            if path == "/healthz":
                assert response.status_code == 200
                continue
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert response.headers["www-authenticate"] == "Bearer"


def test_a_team_never_sees_another_teams_resources(api: ApiEnv, ready_team: TeamClient, other_team: TeamClient) -> None:
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
        job_service.add_artifact(
            session=session,
            job_id=job_id,
            name="student.safetensors",
            kind="student",
            size=1,
            sha256="0" * 64,
            storage_key="jobs/x",
        )
        job_service.finish(session=session, job_id=job_id, status="succeeded")
    evaluation = ready_team.post(
        f"/v1/jobs/{job_id}/evaluations", json={"targets": [{"dataset": "tgt", "split": "train"}]}
    )
    assert evaluation.status_code == 202, evaluation.text
    evaluation_id = evaluation.json()["id"]
    other_team.register("tgt")
    reads = [
        f"/v1/jobs/{job_id}",
        f"/v1/jobs/{job_id}/events",
        f"/v1/jobs/{job_id}/metrics",
        f"/v1/jobs/{job_id}/artifacts",
        f"/v1/jobs/{job_id}/artifacts/student.safetensors",
        f"/v1/jobs/{job_id}/artifacts/student.safetensors:link",
        f"/v1/jobs/{job_id}/evaluations",
        f"/v1/evaluations/{evaluation_id}",
        "/v1/datasets/src",
    ]
    for path in reads:
        assert ready_team.get(path, follow_redirects=False).status_code in (200, 307, 503), path
        response = other_team.get(path)
        assert response.status_code == 404, path
        fake = path.replace(job_id, "0" * 36).replace(evaluation_id, "1" * 36).replace("/src", "/nosuch")
        unknown = other_team.get(fake).json()
        # indistinguishable from a resource that does not exist (same title, same wording)
        assert response.json()["title"] == unknown["title"]
        assert response.json()["detail"].split("'")[0] == unknown["detail"].split("'")[0], path
    assert other_team.post(f"/v1/jobs/{job_id}/cancel").status_code == 404
    assert (
        other_team.post(
            f"/v1/jobs/{job_id}/evaluations", json={"targets": [{"dataset": "tgt", "split": "train"}]}
        ).status_code
        == 404
    )
    assert all(j["id"] != job_id for j in other_team.get("/v1/jobs").json()["items"])
    assert [d["name"] for d in other_team.get("/v1/datasets").json()["items"]] == ["tgt"]
    artifact_weights = spec_dict(student={"model": "test_vit", "weights": f"artifact://{job_id}/student.safetensors"})
    other_team.register("src")
    refused = other_team.post("/v1/jobs", json=artifact_weights)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "student.weights"
    assert ready_team.post("/v1/jobs", json=artifact_weights).status_code == 201


def test_datasets(ready_team: TeamClient, api: ApiEnv) -> None:
    listed = ready_team.get("/v1/datasets").json()["items"]
    assert [d["name"] for d in listed] == ["src", "tgt"] and all(d["status"] == "valid" for d in listed)
    again = ready_team.register("src")
    assert again.status_code == 200
    bad = ready_team.register("broken", bad=True)
    assert bad.status_code == 201 and bad.json()["status"] == "invalid"
    report = ready_team.get("/v1/datasets/broken").json()["report"]
    assert report["problems"][0]["kind"] == "bad_label" and report["splits"]["train"]["images"] == 2
    outside = ready_team.post("/v1/datasets", json={"name": "etc", "layout": "folder", "uri": "file:///etc"})
    assert outside.status_code == 422 and outside.json()["errors"][0]["field"] == "uri"
    assert "allowed" in outside.json()["errors"][0]["message"] and outside.json()["errors"][0]["fix"]
    assert ready_team.get("/v1/datasets/etc").status_code == 404  # nothing was stored
    for body in (
        {"name": "x", "layout": "weird", "uri": "file:///x"},
        {"name": "x", "layout": "folder", "uri": "http://x"},
        {"name": "../x", "layout": "folder", "uri": "file:///x"},
        {"name": "x"},
    ):
        response = ready_team.post("/v1/datasets", json=body)
        assert response.status_code == 422, body
    assert ready_team.get("/v1/datasets/nope").status_code == 404


def test_evaluations(api: ApiEnv, ready_team: TeamClient) -> None:
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    body = {"targets": [{"dataset": "tgt", "split": "train"}]}
    assert ready_team.post(f"/v1/jobs/{job_id}/evaluations", json=body).status_code == 409
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
        job_service.finish(session=session, job_id=job_id, status="succeeded")
    unknown = ready_team.post(f"/v1/jobs/{job_id}/evaluations", json={"targets": [{"dataset": "zzz"}]})
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "targets[0].dataset"
    created = ready_team.post(f"/v1/jobs/{job_id}/evaluations", json=body)
    assert created.status_code == 202 and created.json()["status"] == "queued"
    assert api.enqueuer.evaluations[-1] == created.json()["id"] and api.enqueuer.committed[-1]
    read = ready_team.get(f"/v1/evaluations/{created.json()['id']}").json()
    assert read["targets"] == [{"dataset": "tgt", "split": "train"}] and read["results"] is None
    assert len(ready_team.get(f"/v1/jobs/{job_id}/evaluations").json()["items"]) == 1


def test_models(team: TeamClient) -> None:
    items = team.get("/v1/models").json()["items"]
    names = {m["name"]: m for m in items}
    assert (
        names["vit_base_patch14_dinov2"]["patch_size"] == 14 and "teacher" in names["vit_base_patch14_dinov2"]["roles"]
    )
    assert all(m["feature_api"] == "forward_intermediates" for m in items)


def test_catalog_lists_what_the_job_spec_accepts(api: ApiEnv, team: TeamClient) -> None:
    assert api.client.get("/v1/catalog").status_code == 401
    body = team.get("/v1/catalog").json()
    assert [m["name"] for m in body["methods"]] == list(gkd_catalog.METHODS)
    gkd = next(m for m in body["methods"] if m["name"] == "gkd")
    assert gkd["two_stage"] and gkd["stages"] == ["stage1", "stage2"] and gkd["stage1_head"] == "qsd"
    assert [h["name"] for h in body["heads"]] == list(gkd_catalog.HEADS)
    assert body["phases"] == list(gkd_catalog.PHASES)
    assert {"name", "summary", "labels", "options"} <= set(body["layouts"][0])
    # Every method the catalogue lists is accepted by POST /v1/jobs' schema, and nothing else is.
    enum = api.client.get("/openapi.json").json()["components"]["schemas"]["JobSpec"]["properties"]["method"]["enum"]
    assert enum == [m["name"] for m in body["methods"]]


def test_storage_that_cannot_be_opened_is_reported_not_raised(api: ApiEnv, team: TeamClient) -> None:
    # Not monkeypatch: it would delete the attribute on undo (starlette's State has no __dict__ entry).
    api.app.state.settings = api.settings.model_copy(update={"storage_url": "ftp://host/x"})
    try:
        ready = team.get("/readyz")
    finally:
        api.app.state.settings = api.settings
    assert ready.status_code == 503 and ready.json()["checks"]["db"] == "ok", ready.text
    assert ready.json()["checks"]["storage"].startswith("error: StorageUnavailable: artifact storage cannot be opened")
    assert "unsupported storage URL 'ftp://host/x'" in ready.json()["checks"]["storage"]


def test_health_ready_and_metrics(api: ApiEnv, ready_team: TeamClient) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = ready_team.get("/readyz")
    assert set(ready.json()["checks"]) == {"db", "broker", "storage"}
    assert ready.json()["checks"]["db"] == "ok" and ready.json()["checks"]["broker"] == "ok"
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    ready_team.post("/v1/jobs", json=spec_dict(name="second"))
    ready_team.get("/v1/jobs/does-not-exist")
    refused = ready_team.get("/metrics")  # every team's figures: an operator's route
    assert refused.status_code == 403 and "admin key" in refused.json()["detail"]
    with session_scope(api.app.state.session_factory) as session:
        admin, _ = create_api_key(session=session, team_name="operators", admin=True)

    def scrape() -> tuple[str, dict[str, float]]:
        text = api.client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
        lines = [line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("gkd_")]
        return text, {name: float(value) for name, value in lines}

    _, before = scrape()  # the database is shared with the module's other tests: compare what changes
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
        job_service.finish(session=session, job_id=job_id, status="succeeded")
        evaluations.create_evaluation(
            session=session, job=job_service.get_job(session=session, job_id=job_id),
            targets=[DataRef(dataset="tgt", split="train")],
        )  # fmt: skip
        second = session.scalar(select(Job.id).where(Job.name == "second"))
        month_ago = utcnow() - timedelta(days=30)
        session.execute(update(Job).where(Job.id == second).values(created_at=month_ago))
        session.execute(update(JobEvent).where(JobEvent.job_id == second).values(time=month_ago))  # queued since
        session.add(WorkerSlots(worker="w1@gpu-host", queue="gpu", slots=4, device="cuda", seen_at=utcnow()))
        session.add(WorkerSlots(worker="w2@gpu-host", queue="gpu", slots=2, device="cuda", seen_at=utcnow()))
    text, after = scrape()

    def change(name: str) -> float:
        return after[name] - before.get(name, 0.0)

    assert change('gkd_jobs{state="queued"}') == -1 and change('gkd_jobs{state="succeeded"}') == 1
    assert change('gkd_queued_jobs{queue="gpu"}') == -1 and after['gkd_queued_jobs{queue="gpu"}'] >= 1
    assert after['gkd_oldest_queued_job_seconds{queue="gpu"}'] >= 30 * 86400  # "second", waiting a month
    assert change('gkd_live_workers{queue="gpu"}') == 2 and change('gkd_worker_slots{queue="gpu"}') == 6
    assert change('gkd_evaluations{state="queued"}') == 1 and change('gkd_evaluations{state="running"}') == 0
    assert "gkd_datasets_validating" in after and "gkd_notifications_pending" in after
    assert 'gkd_http_requests_total{method="POST",route="/v1/jobs",status="201"}' in text
    assert 'gkd_http_requests_total{method="GET",route="/v1/jobs/{job_id}",status="404"}' in text
    assert "gkd_http_request_duration_seconds_bucket" in text


def test_openapi_documents_every_route(api: ApiEnv) -> None:
    schema = api.client.get("/openapi.json").json()
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            if path != "/healthz":
                assert operation.get("description"), (method, path)
    post_jobs = schema["paths"]["/v1/jobs"]["post"]
    assert post_jobs["requestBody"]["content"]["application/json"]["examples"]
    assert "422" in post_jobs["responses"] and "409" in post_jobs["responses"]
    assert schema["components"]["schemas"]["JobSpec"]["additionalProperties"] is False
    assert schema["components"]["schemas"]["DatasetCreate"]["examples"]


def test_create_app_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom fastapi.testclient import TestClient\nfrom api.main import create_app\n"
        "from service.settings import Settings\nimport tempfile\n"
        "app = create_app(Settings(data_dir=tempfile.mkdtemp()))\n"
        "TestClient(app).get('/healthz'); TestClient(app).get('/v1/models'); TestClient(app).get('/v1/catalog')\n"
        "print(sorted(m for m in ('torch', 'timm', 'gkd_core', 'worker') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stderr


@pytest.mark.parametrize("path", ["/v1/jobs/%00", "/v1/evaluations/" + "x" * 5000, "/v1/datasets/%2e%2e"])
def test_odd_paths_are_not_500(team: TeamClient, path: str) -> None:
    assert team.get(path).status_code in (404, 422)


def test_cancel_an_evaluation(api: ApiEnv, ready_team: TeamClient, other_team: TeamClient) -> None:
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
        job_service.finish(session=session, job_id=job_id, status="succeeded")
    body = {"targets": [{"dataset": "tgt", "split": "train"}]}
    queued = ready_team.post(f"/v1/jobs/{job_id}/evaluations", json=body).json()["id"]
    running = ready_team.post(f"/v1/jobs/{job_id}/evaluations", json=body).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        assert evaluations.claim_evaluation(session=session, evaluation_id=running, worker="w@host") is not None

    assert other_team.post(f"/v1/evaluations/{queued}/cancel").status_code == 404  # another team's: not found
    assert ready_team.post(f"/v1/evaluations/{'1' * 36}/cancel").status_code == 404
    cancelled = ready_team.post(f"/v1/evaluations/{queued}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled", cancelled.text
    cancelling = ready_team.post(f"/v1/evaluations/{running}/cancel")
    assert cancelling.status_code == 202 and cancelling.json()["status"] == "cancelling", cancelling.text
    again = ready_team.post(f"/v1/evaluations/{queued}/cancel")
    assert again.status_code == 409 and again.json()["current_status"] == "cancelled", again.text


def test_the_team_lists_its_evaluations_with_their_attempts(
    api: ApiEnv, ready_team: TeamClient, other_team: TeamClient
) -> None:
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
        job_service.finish(session=session, job_id=job_id, status="succeeded")
    body = {"targets": [{"dataset": "tgt", "split": "train"}]}
    first = ready_team.post(f"/v1/jobs/{job_id}/evaluations", json=body).json()["id"]
    second = ready_team.post(f"/v1/jobs/{job_id}/evaluations", json=body).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        assert evaluations.claim_evaluation(session=session, evaluation_id=second, worker="w@host") is not None
    listed = ready_team.get("/v1/evaluations").json()["items"]
    assert [e["id"] for e in listed][:2] == [second, first]  # newest first
    running = next(e for e in listed if e["id"] == second)
    assert (running["status"], running["attempt"], running["max_attempts"], running["error_reason"]) == (
        "running", 1, 3, None
    )
    queued = ready_team.get("/v1/evaluations", params={"status": "queued"}).json()["items"]
    assert first in [e["id"] for e in queued] and second not in [e["id"] for e in queued]
    assert ready_team.get("/v1/evaluations", params={"limit": 1}).json()["items"][0]["id"] == second
    assert all(e["id"] not in (first, second) for e in other_team.get("/v1/evaluations").json()["items"])
    assert ready_team.get("/v1/evaluations", params={"status": "sleeping"}).status_code == 422

"""Notifications over HTTP: the signing secret route, the JobSpec's ``notify`` checks (SSRF at submit) and
their OpenAPI documentation."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import create_app
from service.db import session_scope
from service.models import NotifySecret
from tests.api.conftest import ApiEnv, RecordingEnqueuer, TeamClient
from tests.service.factories import spec_dict

PROBLEM = "application/problem+json"


def _errors(response) -> list[dict]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    return response.json()["errors"]


def test_the_secret_is_shown_once_and_rotates(api: ApiEnv, team: TeamClient, other_team: TeamClient) -> None:
    assert api.client.post("/v1/notify-secret").status_code == 401
    first = team.post("/v1/notify-secret")
    assert first.status_code == 201, first.text
    body = first.json()
    assert body["secret"].startswith("whsec_") and body["header"] == "GKD-Signature" and body["created_at"]
    second = team.post("/v1/notify-secret").json()["secret"]
    assert second != body["secret"]
    assert other_team.post("/v1/notify-secret").json()["secret"] not in (body["secret"], second)
    with session_scope(api.app.state.session_factory) as session:
        stored = [tuple(row) for row in session.execute(select(NotifySecret.nonce, NotifySecret.check))]
    assert stored and all(second not in row for row in stored)  # never stored as such


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost/hook", "localhost is not a public address"),  # a name's address is not echoed
        ("http://10.1.2.3/hook", "private"),
        ("http://192.168.0.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[::1]/hook", "loopback"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://[::ffff:10.0.0.1]/hook", "private"),
        ("http://2130706433/hook", "loopback"),
        ("http://0x7f.1/hook", "loopback"),
    ],
)
def test_private_receivers_are_refused_at_submit(api: ApiEnv, ready_team: TeamClient, url: str, needle: str) -> None:
    ready_team.post("/v1/notify-secret")
    before = len(api.enqueuer.jobs)
    errors = _errors(ready_team.post("/v1/jobs", json=spec_dict(notify={"url": url, "events": ["succeeded"]})))
    (error,) = [e for e in errors if e["field"] == "notify.url"]
    assert needle in error["message"] and "GKD_NOTIFY_ALLOW_PRIVATE=1" in error["message"] and error["fix"]
    assert len(api.enqueuer.jobs) == before


@pytest.mark.parametrize(
    ("notify", "field", "needle"),
    [
        ({"url": "ftp://8.8.8.8/x"}, "notify.url", "http:// or https://"),
        ({"url": "http://me:pw@8.8.8.8/x"}, "notify.url", "credentials"),
        ({"url": "http://8.8.8.8/x", "events": []}, "notify.events", "at least 1"),
        ({"url": "http://8.8.8.8/x", "events": ["done"]}, "notify.events[0]", "succeeded"),
        ({"url": "http://8.8.8.8/x", "events": ["failed", "failed"]}, "notify.events", "duplicates"),
        ({"url": "http://8.8.8.8/x", "secret": "s"}, "notify.secret", "remove this field"),
    ],
)
def test_notify_shape_problems(ready_team: TeamClient, notify: dict, field: str, needle: str) -> None:
    errors = _errors(ready_team.post("/v1/jobs", json=spec_dict(notify=notify)))
    match = [e for e in errors if e["field"] == field]
    assert match, errors
    assert needle in match[0]["message"] + " " + match[0].get("fix", "")


def test_a_team_without_a_secret_is_told_to_create_one(ready_team: TeamClient) -> None:
    errors = _errors(ready_team.post("/v1/jobs", json=spec_dict(notify={"url": "http://8.8.8.8/hook"})))
    (error,) = [e for e in errors if e["field"] == "notify"]
    assert "no notification signing secret" in error["message"] and "gkd notify-secret rotate" in error["fix"]


def test_a_public_receiver_is_accepted_and_private_ones_when_allowed(api: ApiEnv, ready_team: TeamClient) -> None:
    ready_team.post("/v1/notify-secret")
    response = ready_team.post("/v1/jobs", json=spec_dict(notify={"url": "https://8.8.8.8/hook"}))
    assert response.status_code == 201, response.text
    assert response.json()["spec"]["notify"] == {
        "url": "https://8.8.8.8/hook",
        "events": ["succeeded", "failed", "cancelled"],
    }
    lenient = api.settings.model_copy(update={"notify_allow_private": True})
    enqueuer = RecordingEnqueuer()
    app = create_app(lenient, enqueuer=enqueuer)
    enqueuer.factory = app.state.session_factory
    try:
        with TestClient(app) as client:
            body = spec_dict(notify={"url": "http://127.0.0.1:9/hook", "events": ["running"]})
            allowed = client.post("/v1/jobs", json=body, headers=ready_team.headers)
            assert allowed.status_code == 201, allowed.text
    finally:
        app.state.engine.dispose()


def test_openapi_shows_the_field_and_the_route_errors(api: ApiEnv) -> None:
    schema = api.client.get("/openapi.json").json()
    route = schema["paths"]["/v1/notify-secret"]["post"]
    assert {"201", "401", "503"} <= set(route["responses"])
    notify = schema["components"]["schemas"]["NotifySpec"]
    assert set(notify["properties"]) == {"url", "events"}
    assert "succeeded" in str(notify["properties"]["events"])
    assert "notify" in schema["components"]["schemas"]["JobSpec"]["properties"]

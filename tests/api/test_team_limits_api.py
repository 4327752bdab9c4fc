"""The API side of team limits: GET /v1/jobs/{id} says why a queued job waits (documented in OpenAPI), and a
job asking for more GPUs than a team may ever hold is refused at submit instead of waiting for ever."""

from __future__ import annotations

import pytest

from service import jobs as job_service
from service.db import session_scope
from service.team_limits import TeamLimits
from tests.api.conftest import ApiEnv, TeamClient
from tests.service.factories import spec_dict


def test_a_job_held_by_the_team_limit_shows_why_it_waits(api: ApiEnv, ready_team: TeamClient) -> None:
    first = ready_team.post("/v1/jobs", json=spec_dict(name="first")).json()
    second = ready_team.post("/v1/jobs", json=spec_dict(name="second")).json()
    assert second["waiting_reason"] is None  # nothing has held it back yet
    limits = TeamLimits(max_running_jobs=1)
    with session_scope(api.app.state.session_factory) as session:
        assert job_service.claim_job(session=session, job_id=first["id"], limits=limits) is not None
        assert job_service.claim_job(session=session, job_id=second["id"], limits=limits) is None

    body = ready_team.get(f"/v1/jobs/{second['id']}").json()
    assert body["status"] == "queued" and body["error"] is None
    assert body["waiting_reason"] == "waiting: team at its limit of 1 running job"
    listed = {job["id"]: job for job in ready_team.get("/v1/jobs").json()["items"]}
    assert listed[second["id"]]["waiting_reason"] == body["waiting_reason"]
    assert ready_team.get(f"/v1/jobs/{first['id']}").json()["waiting_reason"] is None
    events = ready_team.get(f"/v1/jobs/{second['id']}/events").json()["items"]
    assert [e["message"] for e in events if e["type"] == "waiting"] == [body["waiting_reason"]]


def test_waiting_reason_is_in_the_openapi_schema(api: ApiEnv) -> None:
    field = api.client.get("/openapi.json").json()["components"]["schemas"]["JobRead"]["properties"]["waiting_reason"]
    assert "team at its limit" in field["description"]


def test_more_gpus_than_the_team_limit_is_a_422(
    api: ApiEnv, ready_team: TeamClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.app.state, "settings", api.settings.model_copy(update={"team_max_gpus": 1}))
    body = spec_dict(resources={"gpus": 2})
    response = ready_team.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    (error,) = [e for e in response.json()["errors"] if e["field"] == "resources.gpus"]
    assert "GKD_TEAM_MAX_GPUS=1" in error["message"] and error["fix"] == "ask for resources.gpus <= 1"

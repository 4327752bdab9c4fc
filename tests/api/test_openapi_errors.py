"""Every route documents the problems it can answer; OPTIONS and 405 name every method a path serves."""

from __future__ import annotations

import tempfile
from pathlib import Path

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from api.main import create_app
from api.openapi_errors import implied_statuses, leaf_routes
from service.settings import Settings
from tests.api.conftest import ApiEnv


def test_options_and_405_answer_the_real_allow_set(api: ApiEnv) -> None:
    for path in ("/v1/datasets", "/v1/jobs", "/v1/jobs/00000000-0000-0000-0000-000000000000/evaluations"):
        answer = api.client.options(path)
        assert answer.status_code == 204 and answer.headers["allow"] == "GET, OPTIONS, POST", path
    refused = api.client.delete("/v1/datasets")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, OPTIONS, POST"
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert api.client.options("/v1/nothing-here").status_code == 404


def test_every_route_lists_the_errors_its_body_and_dependencies_imply(api: ApiEnv) -> None:
    schema = api.client.get("/openapi.json").json()
    routes = [r for r in leaf_routes(api.app.routes) if isinstance(r, APIRoute) and r.include_in_schema]
    assert len(routes) > 15
    for route in routes:
        for method in sorted(route.methods or ()):
            listed = set(schema["paths"][route.path_format][method.lower()]["responses"])
            missing = {str(code) for code in implied_statuses(route)} - listed
            assert not missing, (method, route.path, missing)
    assert {"400", "413", "415", "422", "401", "503"} <= set(schema["paths"]["/v1/datasets"]["post"]["responses"])
    assert "503" in schema["paths"]["/v1/jobs/{job_id}"]["get"]["responses"]


def test_an_unreachable_database_is_a_503_with_retry_after() -> None:
    settings = Settings(
        data_dir=Path(tempfile.mkdtemp()), database_url="postgresql+psycopg://nobody@127.0.0.1:1/nothing"
    )
    client = TestClient(create_app(settings), raise_server_exceptions=False)
    answer = client.get("/v1/datasets", headers={"Authorization": "Bearer gkd_0123456789ab_" + "s" * 43})
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert answer.json()["title"] == "Database unavailable"

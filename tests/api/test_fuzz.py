"""Schemathesis over the OpenAPI schema (bounded examples, SQLite): bad input never gets a 500."""

from __future__ import annotations

from typing import Any, cast

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.api.conftest import ApiEnv, TeamClient


def test_no_server_errors(api: ApiEnv, ready_team: TeamClient) -> None:
    if api.backend != "sqlite":
        pytest.skip("fuzzing runs once, on SQLite, to keep the suite fast")
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.app)
    operations = [cast(Any, result).ok() for result in schema.get_all_operations()]
    assert len(operations) >= 16
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        def run(case: schemathesis.Case) -> None:
            headers = {**dict(case.headers or {}), **ready_team.headers}
            response = case.call(headers=headers)
            case.validate_response(response, checks=[not_a_server_error])

        run()

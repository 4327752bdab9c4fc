"""Fixtures: one real API server per test module (uvicorn thread, temporary SQLite database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.live_api import LiveServer, live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("api")) as running:
        yield running

"""API test fixtures: one app per database backend, a recording enqueuer, and per-test teams with keys."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from service.auth import create_api_key
from service.db import session_scope
from service.models import Evaluation, Job
from service.settings import Settings
from tests.service._db import database_url, postgres_url, write_folder_dataset  # noqa: F401


@dataclass
class RecordingEnqueuer:
    """Records what was enqueued, and checks the row was already committed (visible to a new session)."""

    factory: sessionmaker[Session] | None = None
    jobs: list[str] = field(default_factory=list)
    evaluations: list[str] = field(default_factory=list)
    committed: list[bool] = field(default_factory=list)

    def enqueue_job(self, job_id: str, queue: str = "gpu") -> None:
        assert self.factory is not None
        with self.factory() as other:
            self.committed.append(other.get(Job, job_id) is not None)
        self.jobs.append(job_id)

    def enqueue_evaluation(self, evaluation_id: str, queue: str = "gpu") -> None:
        assert self.factory is not None
        with self.factory() as other:
            self.committed.append(other.get(Evaluation, evaluation_id) is not None)
        self.evaluations.append(evaluation_id)


@dataclass
class ApiEnv:
    app: FastAPI
    client: TestClient
    settings: Settings
    enqueuer: RecordingEnqueuer
    backend: str


@pytest.fixture(scope="session")
def api_env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiEnv]:  # noqa: F811
    data_dir = tmp_path_factory.mktemp("data")
    settings = Settings(data_dir=data_dir, database_url=database_url, broker_url="memory://", max_request_bytes=64_000)
    enqueuer = RecordingEnqueuer()
    app = create_app(settings, enqueuer=enqueuer)
    enqueuer.factory = app.state.session_factory
    with TestClient(app) as client:
        yield ApiEnv(app, client, settings, enqueuer, "sqlite" if database_url.startswith("sqlite") else "postgresql")
    app.state.engine.dispose()


@pytest.fixture
def api(api_env: ApiEnv) -> ApiEnv:
    api_env.app.state.store = None
    return api_env


@dataclass
class TeamClient:
    """A team's key and helpers to call the API as that team."""

    env: ApiEnv
    name: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def get(self, path: str, **kw: Any) -> Any:
        return self.env.client.get(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.env.client.post(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def client_delete(self, path: str, **kw: Any) -> Any:
        return self.env.client.delete(path, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def register(self, name: str, *, bad: bool = False) -> Any:
        root = write_folder_dataset(self.env.settings.data_dir / "ds" / f"{self.name}-{name}", bad_label=bad)
        response = self.post("/v1/datasets", json={"name": name, "layout": "folder", "uri": root.as_uri()})
        assert response.status_code in (200, 201), response.text
        return response


def _new_team(env: ApiEnv) -> TeamClient:
    name = f"team-{secrets.token_hex(4)}"
    with session_scope(env.app.state.session_factory) as session:
        key, _ = create_api_key(session=session, team_name=name)
    return TeamClient(env, name, key)


@pytest.fixture
def team(api: ApiEnv) -> TeamClient:
    return _new_team(api)


@pytest.fixture
def other_team(api: ApiEnv) -> TeamClient:
    return _new_team(api)


@pytest.fixture
def ready_team(team: TeamClient) -> TeamClient:
    """A team with valid datasets src and tgt registered."""
    team.register("src")
    team.register("tgt")
    return team


def data_path(env: ApiEnv) -> Path:
    return env.settings.data_dir

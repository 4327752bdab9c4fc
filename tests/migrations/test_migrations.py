"""Alembic builds the schema from empty on SQLite and PostgreSQL, and autogenerate then finds no difference."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from service.db import make_engine, upgrade_database
from service.models import Base
from tests.service._db import postgres_url  # noqa: F401


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("postgres_url")


def test_upgrade_head_matches_models(empty_url: str) -> None:
    upgrade_database(url=empty_url)
    upgrade_database(url=empty_url)  # idempotent: already at head
    engine = make_engine(url=empty_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert set(Base.metadata.tables) <= tables and "alembic_version" in tables
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, Base.metadata)
        assert diff == [], diff
    finally:
        engine.dispose()


def test_jobs_deleted_before_the_release_give_their_idempotency_key_back(tmp_path) -> None:
    from pathlib import Path

    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    url = f"sqlite:///{tmp_path / 'old.db'}"
    ini = Path(__file__).resolve().parents[2] / "migrations" / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("script_location", str(ini.parent))
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "a1c3e5f7b9d2")  # the release before
    engine = make_engine(url=url)
    try:
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO teams (id, name, created_at) VALUES ('t', 'team', '2026-01-01 00:00:00')"))
            for job_id, deleted in (("kept", None), ("gone", "2026-06-01 00:00:00")):
                conn.execute(
                    text(
                        "INSERT INTO jobs (id, team_id, name, status, method, spec, idempotency_key, attempt, "
                        "max_attempts, progress, created_at, updated_at, deleted_at, queue, cancel_requested) "
                        "VALUES (:id, 't', :id, 'succeeded', 'gkd', '{}', :key, 1, 3, 1.0, '2026-01-01 00:00:00', "
                        "'2026-01-01 00:00:00', :deleted, 'gpu', 0)"
                    ),
                    {"id": job_id, "key": f"key-{job_id}", "deleted": deleted},
                )
        upgrade_database(url=url)
        with engine.connect() as conn:
            keys: dict[str, str | None] = dict(conn.execute(text("SELECT id, idempotency_key FROM jobs")).all())
        assert keys == {"kept": "key-kept", "gone": None}
    finally:
        engine.dispose()

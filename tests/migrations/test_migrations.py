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

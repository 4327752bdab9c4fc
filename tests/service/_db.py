"""Database fixtures shared by tests/service and tests/api: every test runs on SQLite AND PostgreSQL.

PostgreSQL: a throwaway database gkd_test_<random> on 127.0.0.1:5432 (GKD_TEST_POSTGRES_URL to
point elsewhere), created once per session and dropped at the end.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from service.db import make_engine
from service.models import Base

ADMIN_URL = os.environ.get("GKD_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    name = f"gkd_test_{secrets.token_hex(4)}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # the reason is printed; CI (.ci/run) starts PostgreSQL so this does not skip there
        admin.dispose()
        pytest.skip(f"PostgreSQL not reachable at {ADMIN_URL}: {type(exc).__name__}: {exc}")
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of an empty database with the schema built, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'gkd.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = make_engine(url=url)
    Base.metadata.create_all(engine)
    engine.dispose()
    yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """One engine per backend."""
    eng = make_engine(url=database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back: commits become savepoints."""
    connection = engine.connect()
    outer = connection.begin()
    sess = Session(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield sess
    finally:
        sess.close()
        outer.rollback()
        connection.close()


def write_folder_dataset(
    root: Path, *, splits: tuple[str, ...] = ("train", "val"), images: int = 2, bad_label: bool = False
) -> Path:
    """A tiny dataset in gkd_core's "folder" layout (images/{split}, masks/{split}, classes.json)."""
    (root).mkdir(parents=True, exist_ok=True)
    (root / "classes.json").write_text(json.dumps({"names": ["road", "sky"], "ignore_index": 255}))
    rng = np.random.default_rng(0)
    for split in splits:
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for i in range(images):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(
                root / "images" / split / f"{i}.png"
            )
            mask = rng.integers(0, 2, (16, 16), dtype=np.uint8)
            if bad_label:
                mask[0, 0] = 7  # not a class id and not the ignore index
            Image.fromarray(mask).save(root / "masks" / split / f"{i}.png")
    return root

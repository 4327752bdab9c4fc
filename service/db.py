"""Database engine and sessions; nothing connects at import time.

SQLite (embedded mode) gets foreign keys, WAL and a busy timeout, and the pysqlite transaction
fix from SQLAlchemy's docs so SAVEPOINTs (used by tests and nested transactions) behave. Writing
transactions begin IMMEDIATE; read-only ones (``read_session_factory``) begin DEFERRED and take no lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings, get_settings

POOL_SIZE, POOL_OVERFLOW = 5, 10  # SQLAlchemy's defaults, named: the API admits this many sessions at once
READ_ONLY = "gkd_read_only"  # execution option: begin SQLite transactions deferred and query-only


def make_engine(settings: Settings | None = None, *, url: str | None = None) -> Engine:
    """Build an engine for the configured database (or ``url``), ready for several threads/processes."""
    settings = settings or get_settings()
    raw_url = url or settings.resolved_database_url
    parsed = make_url(raw_url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(raw_url, pool_pre_ping=True, future=True, pool_size=POOL_SIZE, max_overflow=POOL_OVERFLOW)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        raw_url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=POOL_SIZE,
        max_overflow=POOL_OVERFLOW,
    )
    _configure_sqlite(engine, in_memory=not parsed.database or parsed.database == ":memory:")
    return engine


def _configure_sqlite(engine: Engine, *, in_memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin (SAVEPOINT correctness).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        if not in_memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            # Readers never take the write lock: in WAL mode a deferred transaction reads a snapshot
            # while a writer commits. query_only makes a write in it fail at once instead of silently
            # needing the lock that readers are meant not to wait for.
            connection.exec_driver_sql("PRAGMA query_only=ON")
            connection.exec_driver_sql("BEGIN DEFERRED")
            return
        # IMMEDIATE takes the write lock up front: a deferred transaction that reads, then writes
        # after another connection committed (the worker's heartbeat) fails at once with
        # "database is locked" (SQLITE_BUSY_SNAPSHOT) instead of waiting out busy_timeout.
        connection.exec_driver_sql("PRAGMA query_only=OFF")
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def read_only_engine(engine: Engine) -> Engine:
    """The same engine and pool for work that only reads: its transactions take no lock and refuse writes.

    On SQLite every transaction of ``engine`` otherwise begins IMMEDIATE, which takes the database's single
    write lock: concurrent readers then queue behind each other and behind the worker's writes, polling the
    busy handler with sleeps of up to 100 ms (issue 15's embedded stall). On PostgreSQL the transactions are
    READ ONLY, so a write there fails too.
    """
    if engine.dialect.name == "sqlite":
        return engine.execution_options(**{READ_ONLY: True})
    if engine.dialect.name == "postgresql":
        return engine.execution_options(postgresql_readonly=True)
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit (routes serialise after commit)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for requests that only read (GET, HEAD): see ``read_only_engine``."""
    return sessionmaker(bind=read_only_engine(engine), expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def upgrade_database(settings: Settings | None = None, *, url: str | None = None) -> None:
    """Run the Alembic migrations up to head (used by ``gkd serve``, ``gkd keys`` and tests)."""
    from alembic import command
    from alembic.config import Config

    settings = settings or get_settings()
    ini = Path(__file__).resolve().parent.parent / "migrations" / "alembic.ini"
    config = Config(str(ini))
    config.set_main_option("script_location", str(ini.parent))
    target = url or settings.resolved_database_url
    if make_url(target).get_backend_name() == "sqlite":
        database = make_url(target).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    config.set_main_option("sqlalchemy.url", target.replace("%", "%%"))
    command.upgrade(config, "head")

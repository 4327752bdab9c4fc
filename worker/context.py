"""Per-process resources of a worker: settings, database sessions, artifact store, URI resolver."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.auth import team_name
from service.db import make_engine, session_factory, session_scope
from service.settings import Settings, get_settings
from service.storage import ArtifactStore, get_store
from service.uris import UriResolver


@dataclass
class WorkerContext:
    """What every task needs; built lazily so importing the worker opens no connections."""

    settings: Settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings)

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        return session_factory(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on error."""
        with session_scope(self.sessions) as session:
            yield session

    @cached_property
    def store(self) -> ArtifactStore:
        return get_store(self.settings, create_bucket=True)

    def resolver(self, *, team_id: str) -> UriResolver:
        """A resolver whose artifact:// URIs only reach jobs of ``team_id``."""
        from service.models import Job

        def can_access(job_id: str) -> bool:
            with self.session() as session:
                job = session.get(Job, job_id)
                return job is not None and job.team_id == team_id

        with self.session() as session:
            team = team_name(session=session, team_id=team_id)
        return UriResolver.from_settings(
            self.settings, team=team, artifact_store=self.store, can_access_job=can_access
        )

    @property
    def scratch(self) -> Path:
        """Local folder for work dirs and caches on this host."""
        path = Path(self.settings.data_dir) / "work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    @cached_property
    def hostname(self) -> str:
        return socket.gethostname()


_context: WorkerContext | None = None


def get_context() -> WorkerContext:
    """The process-wide context (tests replace it with ``set_context``)."""
    global _context
    if _context is None:
        _context = WorkerContext(get_settings())
    return _context


def set_context(context: WorkerContext | None) -> None:
    """Install a context (or drop it so the next call rebuilds from settings)."""
    global _context
    _context = context

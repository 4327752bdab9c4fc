"""Request dependencies as Annotated aliases: settings, database session, current team, enqueuer, store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated, TypeVar

import anyio
import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service import auth
from service.dataset_validation import DatasetValidator
from service.db import POOL_OVERFLOW, POOL_SIZE
from service.models import ApiKey, Team
from service.queue import Enqueuer
from service.settings import Settings
from service.storage import ArtifactStore, StorageUnavailable
from service.storage import get_store as build_store

_T = TypeVar("_T")
_bearer = HTTPBearer(auto_error=False, description="An API key from `gkd keys create --team NAME`")


async def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


READ_METHODS = frozenset({"GET", "HEAD"})
CLOSING_THREADS = 4  # closing is a ROLLBACK and a pool check-in: quick, and never waits for a connection


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request; routes commit explicitly, anything uncommitted is rolled back.

    GET and HEAD (safe methods: they never write) get a read-only session, which on SQLite takes no
    lock, so reads never queue behind each other or behind the worker's writes.

    A request first takes one of ``POOL_SIZE + POOL_OVERFLOW`` session slots, waiting on the event loop, so a
    request thread never waits in the pool for a connection. It used to: under load all 40 request threads
    waited in the pool while the connections were held by finished requests whose response serialisation
    and session teardown needed one of those threads, and the server stalled until the pool timed out (30 s).
    Closing runs on threads of its own limiter and is shielded from a disconnecting client's cancellation.
    """
    factory = (
        request.app.state.read_session_factory if request.method in READ_METHODS else request.app.state.session_factory
    )
    slots = _per_app(request, "session_slots", lambda: anyio.Semaphore(POOL_SIZE + POOL_OVERFLOW))
    async with slots:
        session: Session = factory()
        try:
            yield session
        finally:
            closing = _per_app(request, "session_closing", lambda: anyio.CapacityLimiter(CLOSING_THREADS))
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_end_session, session, limiter=closing)


def _end_session(session: Session) -> None:
    session.rollback()
    session.close()


def _per_app(request: Request, name: str, make: Callable[[], _T]) -> _T:
    """An anyio primitive kept on the app, made on the event loop on first use."""
    value: _T | None = getattr(request.app.state, name, None)
    if value is None:
        value = make()
        setattr(request.app.state, name, value)
    return value


SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]


def get_current_key(
    session: SessionDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> ApiKey:
    """The Bearer key's row, with its team loaded; 401 problem otherwise.

    The read-only transaction ends here: on SQLite it holds the write lock, and the next sync
    dependency or the route may have to wait for a threadpool thread (see ``get_session``).
    """
    key = auth.authenticate_key(session=session, key=credentials.credentials if credentials else None)
    assert key.team is not None  # loaded now, in this thread, before the transaction ends
    session.commit()
    return key


async def get_current_team(key: Annotated[ApiKey, Depends(get_current_key)], session: SessionDep) -> Team:
    """The team owning the Bearer key; 401 problem otherwise.

    Async because it touches no database (the team was loaded with the key): a sync dependency would cost a
    threadpool round trip on every request.
    """
    team = key.team
    session.expunge(team)
    return team


async def get_enqueuer(request: Request) -> Enqueuer:
    """How committed work reaches the workers (a Celery sender, or a fake in tests)."""
    enqueuer: Enqueuer = request.app.state.enqueuer
    return enqueuer


def get_store(request: Request) -> ArtifactStore:
    """The app's artifact store, built from its settings on first use; 503 when it cannot be built."""
    store: ArtifactStore | None = request.app.state.store
    if store is None:
        try:
            store = build_store(request.app.state.settings)
        except Exception as exc:  # configuration errors of any kind: report, don't 500
            raise StorageUnavailable(f"artifact storage cannot be opened: {exc}") from exc
        request.app.state.store = store
    return store


def get_dataset_validator(request: Request) -> DatasetValidator:
    """The app's dataset validation pool (service/dataset_validation.py)."""
    validator: DatasetValidator = request.app.state.dataset_validator
    return validator


CurrentTeam = Annotated[Team, Depends(get_current_team)]
CurrentKey = Annotated[ApiKey, Depends(get_current_key)]
EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]
ValidatorDep = Annotated[DatasetValidator, Depends(get_dataset_validator)]

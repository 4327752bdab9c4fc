"""Request dependencies as Annotated aliases: settings, database session, current team, enqueuer, store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service import auth
from service.models import ApiKey, Team
from service.queue import Enqueuer
from service.settings import Settings
from service.storage import ArtifactStore, StorageUnavailable
from service.storage import get_store as build_store

_bearer = HTTPBearer(auto_error=False, description="An API key from `gkd keys create --team NAME`")


def get_app_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    """A session per request; routes commit explicitly, anything uncommitted is rolled back.

    ``async`` on purpose, though the session is synchronous: the rollback that ends a request's
    transaction must not wait for a threadpool thread. On SQLite every transaction holds the write
    lock (BEGIN IMMEDIATE), so under a burst every pool thread can be waiting for that lock while the
    request that holds it waits for a thread to run its teardown: a deadlock until busy_timeout (30 s).
    The rollback runs on the event loop instead; it never waits on a lock.
    """
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.rollback()
        session.close()


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


def get_current_team(key: Annotated[ApiKey, Depends(get_current_key)], session: SessionDep) -> Team:
    """The team owning the Bearer key; 401 problem otherwise."""
    team = key.team
    session.expunge(team)
    return team


def get_enqueuer(request: Request) -> Enqueuer:
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


CurrentTeam = Annotated[Team, Depends(get_current_team)]
CurrentKey = Annotated[ApiKey, Depends(get_current_key)]
EnqueuerDep = Annotated[Enqueuer, Depends(get_enqueuer)]
StoreDep = Annotated[ArtifactStore, Depends(get_store)]

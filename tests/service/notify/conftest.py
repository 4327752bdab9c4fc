"""Fixtures for notification tests: committing sessions on each backend and a clean outbox per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete
from sqlalchemy.orm import Session

from service.db import session_factory, session_scope
from service.models import NotificationDelivery
from service.settings import Settings
from tests.service._db import database_url, engine, postgres_url  # noqa: F401

Scope = Callable[[], AbstractContextManager[Session]]


@pytest.fixture
def scope(engine: Engine) -> Iterator[Scope]:  # noqa: F811
    """Committing sessions (the deliverer runs its own transactions, in threads); the outbox starts empty."""
    sessions = session_factory(engine)

    def open_scope() -> AbstractContextManager[Session]:
        return session_scope(sessions)

    with open_scope() as session:
        session.execute(delete(NotificationDelivery))  # other tests' leftovers must not be sent here
    yield open_scope


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Fast retries for tests; the local receiver is on 127.0.0.1, so private addresses are allowed."""
    return Settings(
        data_dir=tmp_path,
        notify_allow_private=True,
        notify_timeout_s=5.0,  # a loopback POST past this on a busy machine would be an extra attempt
        notify_backoff_s=0.05,
        notify_backoff_max_s=0.2,
        notify_retry_for_s=30.0,
        notify_poll_s=0.05,
    )

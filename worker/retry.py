"""Which failures are worth another try, and how long to wait before it.

Only infrastructure faults that go away by themselves are retried: the broker, the database
connection, the object store. The worker waits those out in place for ``outage_window_s``
(worker/outage.py) without spending an attempt; attempts are for lost workers (``RankLost``, a
stale heartbeat). Everything else (bad input found late, bugs) fails at once with its class and
message. A row fails with reason "infra" once ``max_attempts`` is spent or an outage outlasts the window.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

from gkd_core.errors import GKDError
from service.errors import DomainError
from service.settings import Settings
from service.storage import StorageUnavailable
from service.uris import UriError

# Bad input the user can fix: these fail the job with reason "user" and the exception's message.
USER_ERRORS: tuple[type[BaseException], ...] = (GKDError, UriError, DomainError, ValueError, FileNotFoundError)


class RankLost(Exception):
    """A training rank died without reporting why (killed, out of memory, a lost peer or GPU)."""


class OutageTooLong(Exception):
    """A transient infrastructure fault outlasted the outage window; ``__cause__`` is the last fault."""

    def __init__(self, what: str, waited_s: float, window_s: float, cause: BaseException) -> None:
        super().__init__(
            f"{what}: infrastructure unreachable for {waited_s:.0f} s, longer than the outage window "
            f"(GKD_OUTAGE_WINDOW_S={window_s:g}); last error {type(cause).__name__}: {cause}"
        )
        self.waited_s = waited_s
        self.window_s = window_s


class SpecUnreadable(RuntimeError):
    """A stored spec this worker's release does not accept (the API that took it runs another release)."""


# Listed, not inferred: a new transient class is added here on purpose, with a reason.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RankLost,  # the next attempt resumes from the last stored checkpoint
    SpecUnreadable,  # not the user's doing: the next attempt may land on an upgraded worker
    StorageUnavailable,  # S3 unreachable or 5xx after botocore's own retries
    sqlalchemy.exc.OperationalError,  # DB restarted, connection dropped, SQLite "database is locked"
    sqlalchemy.exc.DisconnectionError,
    sqlalchemy.exc.TimeoutError,  # connection pool exhausted
    kombu.exceptions.OperationalError,  # broker unreachable
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,  # builtin: refused / reset / aborted sockets
    TimeoutError,
)

_MAX_CAUSE_DEPTH = 8


def is_transient(exc: BaseException) -> bool:
    """True if ``exc`` or an exception it was explicitly raised from (``raise ... from``) is transient.

    Only ``__cause__`` is followed, not ``__context__``: an error raised while handling a network
    blip is not itself a network blip.
    """
    seen: BaseException | None = exc
    for _ in range(_MAX_CAUSE_DEPTH):
        if seen is None or isinstance(seen, OutageTooLong):  # already waited out: final
            return False
        if isinstance(seen, TRANSIENT_ERRORS):
            return True
        seen = seen.__cause__
    return False


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with jitter: ``base_s * factor**(attempt-1)``, capped, then jittered.

    ``jitter`` is the fraction of the delay drawn at random (0 = fixed delays, 1 = "full jitter"),
    so workers that failed together do not all come back in the same second.
    """

    base_s: float = 5.0
    factor: float = 2.0
    max_s: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.max_s < self.base_s:
            raise ValueError(f"need 0 <= base_s <= max_s, got base_s={self.base_s}, max_s={self.max_s}")
        if self.factor < 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    @classmethod
    def from_settings(cls, settings: Settings) -> BackoffPolicy:
        """The backoff the settings configure (``retry_backoff_base_s``, ``retry_backoff_max_s``)."""
        base = settings.retry_backoff_base_s
        return cls(base_s=base, max_s=max(base, settings.retry_backoff_max_s))

    def delay(self, attempt: int, *, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before attempt ``attempt + 1``, after ``attempt`` (1-based) failed."""
        if attempt < 1:
            raise ValueError(f"attempt is 1-based, got {attempt}")
        capped = min(self.max_s, self.base_s * self.factor ** min(attempt - 1, 64))
        return capped * (1 - self.jitter * rand())


def should_retry(exc: BaseException, *, attempt: int, max_attempts: int) -> bool:
    """Retry a transient failure while attempts remain; never retry anything else."""
    return attempt < max_attempts and is_transient(exc)


def is_outage(exc: BaseException) -> bool:
    """A transient fault of the infrastructure around the worker (waited out in place), not a lost rank or a
    spec this worker's release cannot read (another attempt, elsewhere, is the remedy for both)."""
    return is_transient(exc) and not isinstance(exc, (RankLost, SpecUnreadable))


def is_user_error(exc: BaseException) -> bool:
    """Bad input the user can fix (the row fails with reason "user")."""
    return isinstance(exc, USER_ERRORS)

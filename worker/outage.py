"""Wait out an infrastructure outage in place, instead of spending an attempt on it.

Storage, database and broker faults (worker/retry.py's transient errors, except a lost rank) mostly
last seconds to minutes: an S3 restart, a database failover. Requeueing the job on each one used up
the attempts meant for lost workers within seconds. Instead, every idempotent storage or database
step of the worker goes through ``OutageWindow.call``: it retries the step with exponential backoff
and jitter until it succeeds, or until the fault has lasted ``outage_window_s``; then it raises
``OutageTooLong`` (its ``__cause__`` the last fault), which fails the job with reason infra.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from service.settings import Settings
from worker.retry import BackoffPolicy, OutageTooLong, is_outage

_logger = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass(frozen=True)
class OutageWindow:
    """Retries a step through transient faults for up to ``window_s`` seconds (0: never waits).

    ``on_wait`` hears one line when a step starts waiting (the job's events show the outage);
    ``sleep`` and ``clock`` are injectable for tests.
    """

    window_s: float
    backoff: BackoffPolicy
    on_wait: Callable[[str], None] | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings, on_wait: Callable[[str], None] | None = None) -> OutageWindow:
        return cls(window_s=settings.outage_window_s, backoff=BackoffPolicy.from_settings(settings), on_wait=on_wait)

    def call(self, what: str, step: Callable[[], _T]) -> _T:
        """Run ``step`` (which must be safe to repeat), waiting out transient faults.

        Raises:
            OutageTooLong: the fault lasted longer than the window.
            Exception: anything that is not a transient fault, at once.
        """
        started: float | None = None
        tries = 0
        while True:
            try:
                return step()
            except Exception as exc:
                if not is_outage(exc):
                    raise
                now = self.clock()
                started = now if started is None else started
                waited = now - started
                if waited >= self.window_s:
                    raise OutageTooLong(what, waited, self.window_s, exc) from exc
                tries += 1
                delay = min(self.backoff.delay(tries), self.window_s - waited)
                if tries == 1:
                    self._tell(
                        f"{what}: {type(exc).__name__}: {exc}; waiting up to {self.window_s:g} s for it to come "
                        "back (no attempt is used up)"
                    )
                _logger.warning("%s: %s (try %d); retrying in %.1f s", what, exc, tries, delay)
                self.sleep(delay)

    def _tell(self, message: str) -> None:
        if self.on_wait is None:
            return
        try:
            self.on_wait(message)
        except Exception:  # the event is a courtesy; the database may be what is down
            _logger.warning("could not record: %s", message, exc_info=True)

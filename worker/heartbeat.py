"""A background heartbeat: call a function every N seconds while a job runs, stop promptly.

The sweeper re-queues jobs whose heartbeat is stale, so the beat must keep going through a slow
training step (it runs in its own thread) and must survive a failed beat (a DB hiccup is logged
and retried at the next tick, not fatal). ``stop()`` wakes the thread at once instead of
waiting out the interval, so a finished or cancelled job frees its worker without delay.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

_logger = logging.getLogger(__name__)


class Heartbeat:
    """Runs ``beat()`` every ``interval_s`` seconds in a daemon thread until ``stop()``.

    Use as a context manager around the work it vouches for::

        with Heartbeat(lambda: jobs.heartbeat(session=..., job_id=job_id), interval_s=5):
            run_the_job()
    """

    def __init__(
        self,
        beat: Callable[[], object],
        interval_s: float,
        *,
        name: str = "heartbeat",
        beat_immediately: bool = True,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._beat = beat
        self.interval_s = interval_s
        self._beat_immediately = beat_immediately
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.beats = 0
        self.failures = 0
        self.consecutive_failures = 0
        self.last_error: BaseException | None = None

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> Heartbeat:
        if self._thread.ident is not None:
            raise RuntimeError("a Heartbeat can be started only once; create a new one")
        self._thread.start()
        return self

    def stop(self, timeout_s: float | None = 10.0) -> None:
        """Ask the thread to stop and wait for it (a beat in progress finishes first)."""
        self._stop.set()
        if self._thread.ident is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                _logger.warning("%s still running %.1f s after stop()", self._thread.name, timeout_s or 0)

    def _run(self) -> None:
        if not self._beat_immediately and self._stop.wait(self.interval_s):
            return
        while not self._stop.is_set():
            try:
                self._beat()
            except Exception as exc:  # one failed beat must not end the heartbeat
                self.failures += 1
                self.consecutive_failures += 1
                self.last_error = exc
                _logger.warning("%s failed (%d in a row): %s", self._thread.name, self.consecutive_failures, exc)
            else:
                self.beats += 1
                self.consecutive_failures = 0
            # Event.wait returns True as soon as stop() is called: no waiting out the interval.
            if self._stop.wait(self.interval_s):
                break

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

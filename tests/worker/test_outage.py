"""OutageWindow waits out transient infrastructure faults in place, and gives up past the window."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy.exc

from service.settings import Settings
from service.storage import StorageAuthError, StorageUnavailable
from worker.outage import OutageWindow
from worker.retry import BackoffPolicy, OutageTooLong, RankLost, is_transient


class FakeTime:
    """A clock that only moves when the window sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def window(clock: FakeTime, window_s: float = 30.0, told: list[str] | None = None) -> OutageWindow:
    return OutageWindow(
        window_s=window_s,
        backoff=BackoffPolicy(base_s=1, factor=2, max_s=8, jitter=0),
        on_wait=None if told is None else told.append,
        sleep=clock.sleep,
        clock=clock.clock,
    )


def failing(times: int, exc: Exception) -> tuple[list[int], Callable[[], str]]:
    calls = [0]

    def step() -> str:
        calls[0] += 1
        if calls[0] <= times:
            raise exc
        return "stored"

    return calls, step


def test_a_short_outage_is_waited_out_with_exponential_backoff() -> None:
    clock = FakeTime()
    told: list[str] = []
    calls, step = failing(4, StorageUnavailable("s3 refused the connection"))
    assert window(clock, told=told).call("storing x", step) == "stored"
    assert calls == [5]
    assert clock.sleeps == [1, 2, 4, 8]
    assert len(told) == 1 and "StorageUnavailable" in told[0] and "30 s" in told[0]


def test_an_outage_past_the_window_raises_with_the_real_cause() -> None:
    clock = FakeTime()
    _, step = failing(10_000, sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("db restarting")))
    with pytest.raises(OutageTooLong) as raised:
        window(clock, window_s=20).call("recording metrics", step)
    assert clock.now == pytest.approx(20)  # the last wait is cut to the window, never beyond it
    message = str(raised.value)
    assert "recording metrics" in message and "GKD_OUTAGE_WINDOW_S=20" in message and "db restarting" in message
    assert isinstance(raised.value.__cause__, sqlalchemy.exc.OperationalError)
    assert not is_transient(raised.value)  # waited out already: the job fails, it is not requeued


@pytest.mark.parametrize("exc", [StorageAuthError("wrong secret"), ValueError("bad image"), RankLost("rank died")])
def test_other_failures_are_not_waited_for(exc: Exception) -> None:
    clock = FakeTime()
    calls, step = failing(1, exc)
    with pytest.raises(type(exc)):
        window(clock).call("step", step)
    assert calls == [1] and clock.sleeps == []


def test_a_zero_window_never_waits() -> None:
    clock = FakeTime()
    _, step = failing(1, StorageUnavailable("down"))
    with pytest.raises(OutageTooLong):
        window(clock, window_s=0).call("step", step)
    assert clock.sleeps == []


def test_the_window_and_backoff_come_from_settings() -> None:
    settings = Settings(outage_window_s=42, retry_backoff_base_s=0.5, retry_backoff_max_s=7)
    configured = OutageWindow.from_settings(settings)
    assert configured.window_s == 42
    assert (configured.backoff.base_s, configured.backoff.max_s) == (0.5, 7)
    assert Settings().outage_window_s == 300 and Settings().queued_resend_s == 120

"""The heartbeat thread beats on time, survives failed beats and stops at once."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from worker.heartbeat import Heartbeat


def test_beats_repeatedly_and_stops_promptly() -> None:
    beats: list[float] = []
    with Heartbeat(lambda: beats.append(time.monotonic()), interval_s=0.05) as heartbeat:
        time.sleep(0.3)
        assert heartbeat.running
    stopped = time.monotonic()
    assert not heartbeat.running
    # Bounded by the time that really passed (a busy machine oversleeps), and never closer than the interval.
    assert 3 <= len(beats) <= (stopped - beats[0]) / 0.05 + 2, beats
    assert all(later - earlier >= 0.045 for earlier, later in itertools.pairwise(beats)), beats
    count = len(beats)
    time.sleep(0.15)
    assert len(beats) == count, "no beats after stop()"
    assert stopped - beats[0] < 1.0


def test_stop_does_not_wait_out_a_long_interval() -> None:
    heartbeat = Heartbeat(lambda: None, interval_s=60).start()
    deadline = time.monotonic() + 5
    while heartbeat.beats < 1:  # the first beat is at once, once the thread is scheduled
        assert time.monotonic() < deadline
        time.sleep(0.01)
    start = time.monotonic()
    heartbeat.stop()
    assert time.monotonic() - start < 1.0
    assert heartbeat.beats == 1 and not heartbeat.running


def test_failed_beats_are_counted_and_do_not_end_the_thread() -> None:
    calls = {"n": 0}

    def flaky() -> None:
        calls["n"] += 1
        if calls["n"] in (2, 3):
            raise ConnectionError("db went away")

    with Heartbeat(flaky, interval_s=0.02) as heartbeat:
        deadline = time.monotonic() + 2
        while heartbeat.beats < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert heartbeat.failures == 2
    assert heartbeat.consecutive_failures == 0
    assert isinstance(heartbeat.last_error, ConnectionError)
    assert heartbeat.beats >= 3


def test_beat_immediately_false_waits_one_interval() -> None:
    called = threading.Event()
    with Heartbeat(called.set, interval_s=0.2, beat_immediately=False):
        assert not called.wait(0.1)
        assert called.wait(1.0)


def test_bad_use_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        Heartbeat(lambda: None, interval_s=0)
    heartbeat = Heartbeat(lambda: None, interval_s=1).start()
    with pytest.raises(RuntimeError, match="only once"):
        heartbeat.start()
    heartbeat.stop()

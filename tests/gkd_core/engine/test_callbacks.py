"""Callback plumbing: the no-op base, fan-out, and stop polling."""

from __future__ import annotations

from pathlib import Path

from gkd_core.engine import Callbacks, CompositeCallbacks, MetricRow, RecordingCallbacks


def test_noop_base_accepts_everything() -> None:
    cb = Callbacks()
    cb.on_metrics([MetricRow("s", 1, 0, "loss", 1.0)])
    cb.on_checkpoint(Path("x"), "s", 1)
    cb.on_progress("s", 0.5, None)
    cb.on_event("hello")
    assert cb.should_stop() is False


def test_composite_fans_out_and_polls_every_child() -> None:
    a, b = RecordingCallbacks(), RecordingCallbacks(stop_at_step=1)
    both = CompositeCallbacks(a, b)
    assert not both.should_stop()
    row = MetricRow("s", 1, 0, "loss", 2.0)
    both.on_metrics([row])
    both.on_checkpoint(Path("c.pt"), "s", 1)
    both.on_progress("s", 1.0, 0.0)
    both.on_event("done")
    assert a.metrics == b.metrics == [row]
    assert a.checkpoints == b.checkpoints == [(Path("c.pt"), "s", 1)]
    assert a.events == b.events == ["done"]
    assert both.should_stop()  # b has now seen step 1
    assert a.polls == b.polls == 2
    assert a.values("loss") == {1: 2.0}

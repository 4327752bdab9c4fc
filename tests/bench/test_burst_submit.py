"""A small burst through bench/burst_submit.py against a live API (no worker: every job is cancelled while queued)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.burst_submit import key_plan, percentile, run_burst
from tests.support.live_api import live_server


def test_key_plan_uses_every_key_and_repeats_some() -> None:
    plan = key_plan(20, 8, seed=1)
    assert len(plan) == 20 and set(plan) == set(range(8))
    with pytest.raises(ValueError, match="--distinct"):
        key_plan(5, 6)


def test_percentile_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.99), percentile(values, 1.0)) == (50.0, 99.0, 100.0)
    assert percentile([], 0.5) == 0.0


def test_a_small_burst_passes_every_check(tmp_path: Path) -> None:
    with live_server(tmp_path / "server", datasets=()) as server:
        report = run_burst(
            server.url,
            server.api_key,
            tmp_path / "server" / "datasets" / "toy",
            submissions=20,
            distinct=8,
            concurrency=8,
            timeout_s=30,
        )
        assert len(server.enqueuer.jobs) == 8  # one job, one message per distinct key
    lines = "\n".join(report.lines())
    assert all(report.checks().values()), lines
    assert report.server_errors == 0 and report.duplicates == 0
    assert sum(call.replayed for call in report.submit) == 12
    assert report.final_status == {"cancelled": 8}
    assert "p50" in lines and "p99" in lines

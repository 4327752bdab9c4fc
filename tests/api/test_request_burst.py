"""More requests at once than the server has threadpool threads, on SQLite: every one is answered, none with 5xx.

Regression: each SQLite transaction holds the write lock (BEGIN IMMEDIATE). A request whose transaction
stayed open across a threadpool hop (authentication in one sync dependency, the route in another, the
session's rollback in a sync teardown) waited for a thread while all 40 threads waited for its lock:
every request stalled for busy_timeout (30 s), then failed with 503 or a pool-timeout 500.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.burst_submit import run_burst
from tests.support.live_api import live_server

THREADPOOL_THREADS = 40  # anyio's default limiter, which runs FastAPI's sync dependencies and routes


def test_a_burst_wider_than_the_threadpool_is_served(tmp_path: Path) -> None:
    with live_server(tmp_path / "server", datasets=()) as server:
        started = time.monotonic()
        report = run_burst(
            server.url,
            server.api_key,
            tmp_path / "server" / "datasets" / "toy",
            submissions=120,
            distinct=100,
            concurrency=2 * THREADPOOL_THREADS,
            timeout_s=30,
        )
        took = time.monotonic() - started
    assert all(report.checks().values()), "\n".join(report.lines())
    assert max(call.seconds for call in report.submit + report.cancel) < 25, "\n".join(report.lines())
    print(f"\n120 submissions + 100 cancels, 80 in flight: {took:.1f} s")

"""bench/api_latency.py's open loop charges a server stall to every request it delays (no coordinated omission)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx

from bench.api_latency import open_loop, percentile

STALL_S = 0.5


def stalling_app() -> Any:
    """A raw ASGI app that serves one request at a time and stalls STALL_S on the 10th."""
    lock = asyncio.Lock()
    served = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal served
        async with lock:
            served += 1
            if served == 10:
                await asyncio.sleep(STALL_S)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def run_loop(rate: float, duration_s: float) -> tuple[list[float], dict[str, int]]:
    async def run() -> tuple[list[float], dict[str, int]]:
        transport = httpx.ASGITransport(app=stalling_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            latencies, errors = await open_loop(client, "/", rate=rate, duration_s=duration_s, connections=8)
            return latencies, dict(errors)

    return asyncio.run(run())


def test_a_stall_delays_every_request_scheduled_during_it() -> None:
    latencies, errors = run_loop(rate=100, duration_s=1.5)
    assert errors == {} and len(latencies) == 150
    delayed = [x for x in latencies if x > 0.2]
    # Requests due during the 0.5 s stall wait for it: about 30 of them are more than 0.2 s late. Timing from
    # the send instead of the due time would show one slow request (the stalled one) and hide the rest.
    assert len(delayed) >= 15, sorted(latencies)[-20:]
    assert max(latencies) >= STALL_S * 0.9


def test_nearest_rank_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert percentile([7.0], 90) == 7.0


def test_the_load_generator_priority_is_raised_only_while_measuring() -> None:
    from bench.api_latency import loadgen_priority
    from worker.sched_group import group_nice

    before = (os.getpriority(os.PRIO_PROCESS, 0), group_nice("self"))
    with loadgen_priority(0) as applied:
        assert applied.startswith("niceness 0")
    with loadgen_priority(-5) as applied:
        if os.geteuid() == 0:  # raising a priority is root's
            assert os.getpriority(os.PRIO_PROCESS, 0) == -5 and applied.startswith("niceness -5")
            assert (group_nice("self") == -5) == (before[1] is not None)
            assert applied.endswith("scheduling group too") == (before[1] is not None)
        else:
            assert "could not set -5" in applied
    assert (os.getpriority(os.PRIO_PROCESS, 0), group_nice("self")) == before

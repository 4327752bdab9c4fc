"""Job start latency: from ``POST /v1/jobs`` to the job's status ``running``, with the worker idle.

``PYTHONPATH=. python bench/job_start.py [--trials 5] [--modes embedded production]``

For each mode it starts a live service (bench/live_service.py: embedded with its SQLite broker, or
production with Redis) and, per trial, submits the tiny job, polls ``GET /v1/jobs/{id}`` every 10 ms
until it is running (client time: POST sent -> running seen), then cancels it and waits until the
worker is idle again. The server-side figure is the gap between the job's ``created`` event and its
transition to ``running`` (both stamped by the database's clients, so no polling delay in it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.live_service import LiveService, Mode, job_spec, live_service, wait_status

TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class StartTimes:
    mode: str
    client_ms: list[float]
    server_ms: list[float]


def server_gap_ms(events: list[dict[str, object]]) -> float:
    """Milliseconds from the job's first event (created) to its first transition to running."""
    created = datetime.fromisoformat(str(events[0]["time"]))
    running = next(e for e in events if e.get("to_status") == "running")
    return 1000 * (datetime.fromisoformat(str(running["time"])) - created).total_seconds()


def one_start(service: LiveService, index: int) -> tuple[float, float]:
    with service.client() as client:
        started = time.perf_counter()
        job_id = (
            client.post("/v1/jobs", json=job_spec(f"start-{index}", stage1_steps=100_000))
            .raise_for_status()
            .json()["id"]
        )
        while True:
            status = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()["status"]
            if status == "running":
                break
            if status in TERMINAL or time.perf_counter() - started > 120:
                raise RuntimeError(f"job {job_id} is {status} after {time.perf_counter() - started:.1f} s")
            time.sleep(0.01)
        client_ms = 1000 * (time.perf_counter() - started)
        events = client.get(f"/v1/jobs/{job_id}/events").raise_for_status().json()["items"]
        client.post(f"/v1/jobs/{job_id}/cancel").raise_for_status()
        wait_status(client, job_id, TERMINAL, timeout_s=120)
    return client_ms, server_gap_ms(events)


def run_mode(mode: Mode, work_dir: Path, trials: int) -> StartTimes:
    times = StartTimes(mode, [], [])
    with live_service(mode, work_dir / mode) as service:
        one_start(service, -1)  # warm-up: first-use costs (connections, imports in the worker's child)
        time.sleep(1)
        for index in range(trials):
            client_ms, server_ms = one_start(service, index)
            times.client_ms.append(client_ms)
            times.server_ms.append(server_ms)
            print(
                f"{mode:<11} trial {index}: POST -> running seen {client_ms:7.1f} ms "
                f"(server events {server_ms:7.1f} ms)",
                flush=True,
            )
            time.sleep(3)  # the worker is idle again: the cancelled job's ranks have exited
    return times


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def main(argv: list[str] | None = None) -> list[StartTimes]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--modes", nargs="+", choices=["embedded", "production"], default=["embedded", "production"])
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    print(
        f"job start, {args.trials} trials per mode; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="gkd-job-start-") as tmp:
        for mode in args.modes:
            results.append(run_mode(mode, args.work_dir or Path(tmp), args.trials))
    for r in results:
        print(
            f"{r.mode:<11} POST -> running: median {median(r.client_ms):.0f} ms, max {max(r.client_ms):.0f} ms "
            f"(client); median {median(r.server_ms):.0f} ms, max {max(r.server_ms):.0f} ms (server events)"
        )
    return results


if __name__ == "__main__":
    main()

"""``gkd serve`` as a user runs it: one command, a data folder, nothing else configured.

The server writes the local team's key to DIR/api-key (0600), answers /readyz with it, runs a tiny
job submitted through the REST API on its own worker process, starts that job within a couple of
seconds of submission (SQLite broker polled every 50 ms), and takes its worker down when it stops.
"""

from __future__ import annotations

import shutil
import signal
import stat
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.ports import free_ports
from tests.support.worker_env import ServerProcess, gkd_env, pid_alive, process_tree, tiny_spec, wait_for

pytestmark = pytest.mark.e2e

# The embedded broker polls every 50 ms (tests/worker/test_smoke.py checks that); this bound only catches a
# job left waiting for the sweeper's resend (minutes), with room for a slow, busy machine.
MAX_START_LATENCY_S = 10.0


def _time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["time"])


def test_gkd_serve_runs_a_job_and_stops_its_worker(tmp_path: Path, tiny_bench: Path) -> None:
    data = tmp_path / "gkd-data"
    shutil.copytree(tiny_bench, data / "bench")  # under DIR: allowed with no configuration at all
    (port,) = free_ports(1)
    gkd = str(Path(sys.executable).parent / "gkd")
    server = ServerProcess(
        [gkd, "serve", "--port", str(port), "--data-dir", str(data)],
        gkd_env(),
        tmp_path / "serve.log",
        f"http://127.0.0.1:{port}",
    ).start()
    try:
        server.wait_healthy(timeout_s=90)
        key_file = data / "api-key"
        assert key_file.is_file()
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text().strip()
        assert str(key_file) in server.tail(200)  # the user is told where the key is

        assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 401
        worker_log = data / "logs" / "worker.log"
        wait_for(
            lambda: worker_log.is_file() and " ready." in worker_log.read_text(errors="replace"),
            timeout_s=90,
            what=f"the embedded worker to be ready\n{server.tail()}",
            interval_s=0.25,
        )
        assert server.process is not None
        tree = process_tree(server.process.pid)
        workers = [pid for pid in tree if pid != server.process.pid]
        assert workers, "gkd serve started no worker process"

        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            for domain in ("toon", "fog"):
                body = {"name": domain, "layout": "folder", "uri": (data / "bench" / domain).as_uri()}
                response = client.post("/v1/datasets", json=body)
                assert response.status_code in (200, 201) and response.json()["status"] == "valid", response.text

            submitted = time.monotonic()
            response = client.post("/v1/jobs", json=tiny_spec("embedded"))
            assert response.status_code == 201, response.text
            job_id = response.json()["id"]

            def finished() -> dict[str, Any] | None:
                job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
                return job if job["status"] in ("succeeded", "failed", "cancelled") else None

            job = wait_for(finished, timeout_s=180, what=f"job {job_id}\n{worker_log.read_text()[-3000:]}")
            took = time.monotonic() - submitted
            assert job["status"] == "succeeded", job
            events = client.get(f"/v1/jobs/{job_id}/events").json()["items"]
            created = next(e for e in events if e["to_status"] == "queued")
            claimed = next(e for e in events if e["to_status"] == "running")
            latency = (_time(claimed) - _time(created)).total_seconds()
            assert 0 <= latency < MAX_START_LATENCY_S, f"queued -> running took {latency:.2f} s"
            artifact = client.get(f"/v1/jobs/{job_id}/artifacts/student.safetensors")
            assert artifact.status_code == 200 and len(artifact.content) > 0
        server.stop(signal.SIGINT)  # Ctrl-C in the user's terminal
        assert server.process.returncode is not None
        wait_for(
            lambda: not any(pid_alive(pid) for pid in workers),
            timeout_s=30,
            what="the embedded worker to stop with the server",
        )
    finally:
        server.kill_group()  # leftovers of a failed run (no-op when everything stopped)
    print(f"\ngkd serve: tiny job POST -> succeeded {took:.1f} s; queued -> running {latency * 1000:.0f} ms")

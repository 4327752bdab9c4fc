"""Job notifications end to end: ``gkd serve`` runs a tiny job, and its embedded worker's deliverer POSTs
signed ``job.running`` and ``job.succeeded`` bodies to a real local receiver, each recorded as a job event.

The receiver listens on 127.0.0.1, so the server runs with GKD_NOTIFY_ALLOW_PRIVATE=1.
"""

from __future__ import annotations

import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from gkd_client import verify_signature
from tests.support.ports import free_ports
from tests.support.webhook_receiver import receiver
from tests.support.worker_env import ServerProcess, gkd_env, tiny_spec, wait_for

pytestmark = pytest.mark.e2e


def test_a_jobs_notifications_arrive_signed(tmp_path: Path, tiny_bench: Path) -> None:
    data = tmp_path / "gkd-data"
    shutil.copytree(tiny_bench, data / "bench")
    (port,) = free_ports(1)
    gkd = str(Path(sys.executable).parent / "gkd")
    env = gkd_env(notify_allow_private=1, notify_poll_s=0.2)
    server = ServerProcess(
        [gkd, "serve", "--port", str(port), "--data-dir", str(data)],
        env,
        tmp_path / "serve.log",
        f"http://127.0.0.1:{port}",
    ).start()
    with receiver() as hook:
        try:
            server.wait_healthy(timeout_s=90)
            worker_log = data / "logs" / "worker.log"
            wait_for(
                lambda: worker_log.is_file() and " ready." in worker_log.read_text(errors="replace"),
                timeout_s=90,
                what=f"the embedded worker to be ready\n{server.tail()}",
            )
            key = (data / "api-key").read_text().strip()
            with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
                for domain in ("toon", "fog"):
                    body = {"name": domain, "layout": "folder", "uri": (data / "bench" / domain).as_uri()}
                    assert client.post("/v1/datasets", json=body).status_code in (200, 201)
                secret = client.post("/v1/notify-secret").raise_for_status().json()["secret"]
                spec = tiny_spec("notified", notify={"url": hook.url("/gkd"), "events": ["running", "succeeded"]})
                response = client.post("/v1/jobs", json=spec)
                assert response.status_code == 201, response.text
                job_id = response.json()["id"]

                def finished() -> dict[str, Any] | None:
                    job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
                    return job if job["status"] in ("succeeded", "failed", "cancelled") else None

                job = wait_for(finished, timeout_s=180, what=f"job {job_id}\n{worker_log.read_text()[-3000:]}")
                assert job["status"] == "succeeded", job
                got = hook.wait_for(2, timeout_s=30)

                def delivered() -> list[dict[str, Any]] | None:
                    events = client.get(f"/v1/jobs/{job_id}/events").json()["items"]
                    notes = [e for e in events if e["type"] == "notification"]
                    return notes if len(notes) == 2 else None

                notes = wait_for(delivered, timeout_s=30, what="two notification events")
        finally:
            server.stop(signal.SIGINT)
            server.kill_group()
    bodies = []
    for request in got:
        verify_signature(secret, request.headers["gkd-signature"], request.body)
        bodies.append(json.loads(request.body))
    assert sorted(b["type"] for b in bodies) == ["job.running", "job.succeeded"]
    assert all(b["job"]["id"] == job_id for b in bodies) and len(got) == 2
    assert all("200 (attempt 1, delivered)" in n["message"] for n in notes), notes

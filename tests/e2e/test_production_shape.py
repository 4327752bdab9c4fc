"""The production shape on one machine: PostgreSQL, Redis, SeaweedFS (signatures checked), the API under
uvicorn and a separate Celery worker, every process configured only through GKD_* variables.

A tiny job goes from POST to succeeded, the student downloads through its presigned URL (no API key
on that request) and loads, and a follow-up evaluation on another domain returns per-domain mIoU.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from service import auth
from service.db import make_engine, session_factory, session_scope, upgrade_database
from tests.support.ports import free_ports
from tests.support.seaweed import SeaweedS3
from tests.support.worker_env import ServerProcess, WorkerProcess, gkd_env, tiny_spec, uvicorn_command, wait_for

pytestmark = pytest.mark.e2e

REDIS_DB = 13  # a database number no other test uses; flushed before and after
BUCKET = "gkd-e2e"
TERMINAL = {"succeeded", "failed", "cancelled"}


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A flushed Redis database on 127.0.0.1:6379 (CI starts Redis; here it normally runs)."""
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"Redis not reachable on 127.0.0.1:6379 ({exc}); .ci/run starts it")
    client.flushdb()
    yield f"redis://127.0.0.1:6379/{REDIS_DB}"
    client.flushdb()
    client.close()


def _poll(client: httpx.Client, path: str, *, timeout_s: float, what: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(path).raise_for_status().json()
        return body if body["status"] in TERMINAL else None

    return wait_for(done, timeout_s=timeout_s, what=what, interval_s=0.5)


def test_production_shape(
    tmp_path: Path,
    tiny_bench: Path,
    postgres_url: str,
    redis_url: str,
    seaweed_s3: SeaweedS3,
    worker_processes: list[WorkerProcess],
) -> None:
    seaweed_s3.ensure_bucket(BUCKET)
    prefix = f"prod-{secrets.token_hex(4)}"
    upgrade_database(url=postgres_url)  # the one-shot migration step of a deployment
    engine = make_engine(url=postgres_url)
    try:
        with session_scope(session_factory(engine)) as session:
            key, _ = auth.create_api_key(session=session, team_name="vision-prod")
    finally:
        engine.dispose()

    (port,) = free_ports(1)
    env = gkd_env(
        mode="production",
        database_url=postgres_url,
        broker_url=redis_url,
        storage_url=f"s3://{BUCKET}/{prefix}",
        s3_endpoint_url=seaweed_s3.endpoint_url,
        s3_access_key=seaweed_s3.access_key,
        s3_secret_key=seaweed_s3.secret_key,
        s3_region=seaweed_s3.region,
        secret_key=secrets.token_hex(24),
        allowed_roots=[tiny_bench],
        data_dir=tmp_path / "scratch",
        heartbeat_interval_s=2,
    )
    api = ServerProcess(uvicorn_command(port), env, tmp_path / "logs" / "api.log", f"http://127.0.0.1:{port}")
    worker = WorkerProcess(env, tmp_path / "logs" / "worker.log", name="prod").start()
    worker_processes.append(worker)
    try:
        api.start().wait_healthy()
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=api.url, headers=headers, timeout=30) as client:
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"db": "ok", "broker": "ok", "storage": "ok"}

            for domain in ("toon", "fog", "retro"):
                body = {"name": domain, "layout": "folder", "uri": (tiny_bench / domain).as_uri()}
                response = client.post("/v1/datasets", json=body)
                assert response.status_code in (200, 201), response.text
                assert response.json()["status"] == "valid", response.json()

            submitted = time.monotonic()
            response = client.post("/v1/jobs", json=tiny_spec("prod-tiny"))
            assert response.status_code == 201, response.text
            job_id = response.json()["id"]
            job = _poll(client, f"/v1/jobs/{job_id}", timeout_s=240, what=f"job {job_id}\n{worker.tail()}")
            job_s = time.monotonic() - submitted
            assert job["status"] == "succeeded", (job.get("error"), worker.tail())
            assert "fog/val" in job["summary"]["student"]

            listed = {a["name"]: a for a in client.get(f"/v1/jobs/{job_id}/artifacts").json()["items"]}
            assert {"student.safetensors", "student.onnx", "model_card.json", "README.md"} <= set(listed)
            stored = seaweed_s3.client().list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/jobs/{job_id}/artifacts/")
            assert {o["Key"].rsplit("/", 1)[-1] for o in stored.get("Contents", [])} >= set(listed)

            redirect = client.get(f"/v1/jobs/{job_id}/artifacts/student.safetensors", follow_redirects=False)
            assert redirect.status_code == 307, redirect.text
            location = redirect.headers["location"]
            assert location.startswith(seaweed_s3.endpoint_url) and "X-Amz-Signature" in location
            download = httpx.get(location, timeout=30)  # no Authorization header: the URL is the credential
            assert download.status_code == 200, download.text[:300]
            assert hashlib.sha256(download.content).hexdigest() == listed["student.safetensors"]["sha256"]
            assert redirect.headers["x-checksum-sha256"] == listed["student.safetensors"]["sha256"]
            student_file = tmp_path / "student.safetensors"
            student_file.write_bytes(download.content)

            import gkd_core  # noqa: F401
            from gkd_core.export import load_student

            model, meta = load_student(student_file)
            assert meta.num_classes == 8 and not model.training

            evaluated = time.monotonic()
            response = client.post(
                f"/v1/jobs/{job_id}/evaluations", json={"targets": [{"dataset": "retro", "split": "val"}]}
            )
            assert response.status_code == 202, response.text
            evaluation = _poll(
                client, f"/v1/evaluations/{response.json()['id']}", timeout_s=120, what=f"evaluation\n{worker.tail()}"
            )
            eval_s = time.monotonic() - evaluated
            assert evaluation["status"] == "succeeded", (evaluation, worker.tail())
            retro = evaluation["results"]["retro/val"]
            assert 0.0 <= retro["miou"] <= 1.0 and retro["images"] > 0 and len(retro["per_class_iou"]) == 8
            assert abs(retro["onnx"]["diff_points"]) < 1.0  # the shipped ONNX file, scored beside PyTorch
    finally:
        api.stop()
        api.kill_group()
    print(f"\nproduction shape: job POST -> succeeded {job_s:.1f} s, follow-up evaluation {eval_s:.1f} s")

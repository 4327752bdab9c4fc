"""A live GKD Distill service for benchmarks: embedded (``gkd serve``) or production (PostgreSQL, Redis).

``live_service(mode, work_dir)`` starts the service the way a user runs it, gives back its URL and an
API key, and stops everything (and drops the PostgreSQL database it created) on exit:

- ``embedded``: ``python -m gkd_cli.cli serve`` (API and one worker, SQLite, SQLite broker).
- ``production``: a fresh PostgreSQL database migrated to head, Redis database ``REDIS_DB`` flushed, the
  API as ``python -m api`` (its default process count) and one Celery worker, configured only by GKD_*.

The tiny synthetic benchmark is written under ``work_dir`` and registered as datasets, so a job can
train beside the measurements (``training_job``). Without a GPU a job would start one gloo rank per core;
the worker is limited to one rank (``GKD_WORKER_CPU_RANKS=1``) so a training job leaves the API a core.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

REPO = Path(__file__).resolve().parents[1]
POSTGRES_ADMIN_URL = os.environ.get("GKD_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 10
DOMAINS = ("toon", "fog")
Mode = Literal["embedded", "production"]


@dataclass
class LiveService:
    """A running service: where it listens, a key for its team, and its processes' logs."""

    mode: Mode
    url: str
    key: str
    logs: list[Path] = field(default_factory=list)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=120, **kwargs)

    def tails(self, lines: int = 30) -> str:
        out = []
        for log in self.logs:
            text = log.read_text(errors="replace").splitlines()[-lines:] if log.is_file() else ["(no log)"]
            out.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(**values: Any) -> dict[str, str]:
    """This environment without GKD_* leftovers, plus ``values`` as GKD_<NAME> (lists as JSON)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GKD_")}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    for name, value in values.items():
        text = json.dumps([str(v) for v in value]) if isinstance(value, list | tuple) else str(value)
        env[f"GKD_{name.upper()}"] = text
    return env


@contextlib.contextmanager
def _process(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group; SIGTERM on exit (it stops its own children), SIGKILL after 30 s."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url}/healthz did not answer in {timeout_s:.0f} s; see {log}")


def wait_worker_ready(log: Path, process: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}; see {log}")
        if log.is_file() and " ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.25)
    raise RuntimeError(f"worker not ready after {timeout_s:.0f} s; see {log}")


def write_datasets(root: Path) -> Path:
    """The tiny synthetic benchmark (32 px), written once under ``root``."""
    import gkd_core  # noqa: F401  (torchvision shim before timm)
    from gkd_core.data import TINY_SIZES, generate_benchmark

    bench = root / "bench"
    if not (bench / DOMAINS[-1]).is_dir():
        generate_benchmark(bench, seed=0, size=32, sizes=TINY_SIZES)
    return bench


@contextlib.contextmanager
def _postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database migrated to head, dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from service.db import upgrade_database

    name = f"gkd_bench_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_database(url=url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextlib.contextmanager
def _redis_db() -> Iterator[str]:
    import redis

    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=2)
    client.flushdb()
    try:
        yield f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    finally:
        client.flushdb()
        client.close()


def _team_key(database_url: str) -> str:
    from service import auth
    from service.db import make_engine, session_factory, session_scope

    engine = make_engine(url=database_url)
    try:
        with session_scope(session_factory(engine)) as session:
            key, _ = auth.create_api_key(session=session, team_name="bench")
    finally:
        engine.dispose()
    return key


@contextlib.contextmanager
def _embedded(work_dir: Path, datasets: Path) -> Iterator[LiveService]:
    port, data_dir = free_port(), work_dir / "embedded"
    url, log = f"http://127.0.0.1:{port}", work_dir / "logs" / "embedded-serve.log"
    command = [sys.executable, "-m", "gkd_cli.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    with _process(command, child_env(allowed_roots=[datasets], worker_cpu_ranks=1), log) as server:
        wait_healthy(url, server, log)
        wait_worker_ready(data_dir / "logs" / "worker.log", server)
        key = (data_dir / "api-key").read_text().strip()
        yield LiveService("embedded", url, key, [log, data_dir / "logs" / "worker.log"])


@contextlib.contextmanager
def _production(work_dir: Path, datasets: Path, api_workers: int | None) -> Iterator[LiveService]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with _postgres_database() as database_url, _redis_db() as broker_url:
        values: dict[str, Any] = dict(
            mode="production",
            database_url=database_url,
            broker_url=broker_url,
            storage_url=(work_dir / "artifacts").resolve().as_uri(),
            secret_key=secrets.token_hex(24),
            allowed_roots=[datasets],
            data_dir=work_dir / "scratch",
            worker_cpu_ranks=1,
        )
        if api_workers is not None:
            values["api_workers"] = api_workers
        env = child_env(**values)
        api_log, worker_log = work_dir / "logs" / "api.log", work_dir / "logs" / "worker.log"
        api_command = [sys.executable, "-m", "api", "--host", "127.0.0.1", "--port", str(port)]
        worker_command = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker", "--queues", "gpu",
            "--concurrency", "1", "--loglevel", "INFO", "--hostname", "bench@%h", "--without-gossip",
            "--without-mingle",
        ]  # fmt: skip
        with _process(api_command, env, api_log) as api, _process(worker_command, env, worker_log) as worker:
            wait_healthy(url, api, api_log)
            wait_worker_ready(worker_log, worker)
            yield LiveService("production", url, _team_key(database_url), [api_log, worker_log])


@contextlib.contextmanager
def live_service(mode: Mode, work_dir: Path, *, api_workers: int | None = None) -> Iterator[LiveService]:
    """Start the service in ``mode`` with the tiny datasets registered; stop it (and clean up) on exit."""
    work_dir.mkdir(parents=True, exist_ok=True)
    datasets = write_datasets(work_dir)
    starter = _embedded(work_dir, datasets) if mode == "embedded" else _production(work_dir, datasets, api_workers)
    with starter as service:
        with service.client() as client:
            for domain in DOMAINS:
                body = {"name": domain, "layout": "folder", "uri": (datasets / domain).as_uri()}
                client.post("/v1/datasets", json=body).raise_for_status()
        yield service


def job_spec(name: str, *, stage1_steps: int = 4) -> dict[str, Any]:
    """The smallest JobSpec that runs every phase: two-block ViTs at 32 px over the tiny benchmark."""
    return {
        "name": name,
        "teacher": {"model": "vit_small_patch16_224", "weights": "none",
                    "overrides": {"depth": 2, "embed_dim": 48, "num_heads": 2}},
        "student": {"model": "vit_tiny_patch16_224", "weights": "none",
                    "overrides": {"depth": 2, "embed_dim": 32, "num_heads": 2}},
        "source": {"dataset": DOMAINS[0], "split": "train"},
        "targets": [{"dataset": DOMAINS[1], "split": "val"}],
        "method": "gkd",
        "stage1": {"steps": stage1_steps, "batch_size": 4, "image_size": 32,
                   "checkpoint_every": max(2, stage1_steps // 4)},
        "stage2": {"steps": 4, "batch_size": 2, "crop_size": 32, "head": "fpn", "checkpoint_every": 2},
        "references": [],
    }  # fmt: skip


def wait_status(client: httpx.Client, job_id: str, statuses: set[str], timeout_s: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["status"] in statuses:
            return job
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {job['status']} after {timeout_s:.0f} s")
        time.sleep(0.05)


@contextlib.contextmanager
def training_job(service: LiveService) -> Iterator[str]:
    """A job training (long stage 1) while the block runs; cancelled afterwards."""
    with service.client() as client:
        job_id = str(
            client.post("/v1/jobs", json=job_spec("bench-train", stage1_steps=100_000)).raise_for_status().json()["id"]
        )
        try:
            wait_status(client, job_id, {"running"})
            time.sleep(3)  # past model building, into the training loop
            yield job_id
        finally:
            client.post(f"/v1/jobs/{job_id}/cancel")
            with contextlib.suppress(RuntimeError):
                wait_status(client, job_id, {"cancelled", "failed", "succeeded"}, timeout_s=60)

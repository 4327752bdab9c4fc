"""Shared pieces for tests that run real jobs: the tiny benchmark, a tiny JobSpec, and worker processes.

``tiny_bench`` (session fixture) writes the synthetic benchmark once at 32 px with TINY_SIZES.
``tiny_spec`` is the smallest JobSpec that still runs every phase. ``WorkerProcess`` starts a real
Celery worker (``celery -A worker.celery_app:app worker``) in its own process group, configured only
through GKD_* variables, so a test can SIGKILL the worker and every child it forked at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

import gkd_catalog

REPO = Path(__file__).resolve().parents[2]
BENCH_DOMAINS = ("toon", "clear", "night", "fog", "sensor", "retro", "pool")
_T = TypeVar("_T")


def tiny_spec(
    name: str = "tiny", *, stage1_steps: int = 4, checkpoint_every: int = 2, **changes: Any
) -> dict[str, Any]:
    """A JobSpec (as JSON) over the tiny benchmark: two-block ViTs, 32 px, a few steps per stage."""
    body: dict[str, Any] = {
        "name": name,
        "teacher": {
            "model": "vit_small_patch16_224",
            "weights": "none",
            "overrides": {"depth": 2, "embed_dim": 48, "num_heads": 2},
        },
        "student": {
            "model": "vit_tiny_patch16_224",
            "weights": "none",
            "overrides": {"depth": 2, "embed_dim": 32, "num_heads": 2},
        },
        "source": {"dataset": "toon", "split": "train"},
        "targets": [{"dataset": "fog", "split": "val"}],
        "method": "gkd",
        "stage1": {"steps": stage1_steps, "batch_size": 4, "image_size": 32, "checkpoint_every": checkpoint_every},
        "stage2": {"steps": 4, "batch_size": 2, "crop_size": 32, "head": "fpn", "checkpoint_every": 2},
        "references": ["student_frozen"],
    }
    body.update(changes)
    method = gkd_catalog.METHODS.get(body["method"])
    if "stage1" not in changes and method is not None and "stage1" not in method.stages:
        del body["stage1"]  # a single-stage method: the API refuses a stage1 block it would ignore
    return body


def write_benchmark(out: Path) -> Path:
    """Write the tiny synthetic benchmark under ``out`` (deterministic, about 3 s)."""
    import gkd_core  # noqa: F401  (torchvision shim before anything imports timm)
    from gkd_core.data import TINY_SIZES, generate_benchmark

    generate_benchmark(out, seed=0, size=32, sizes=TINY_SIZES)
    return out


@pytest.fixture(scope="session")
def tiny_bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny benchmark, written once per session (read-only for tests: copy it before corrupting)."""
    return write_benchmark(tmp_path_factory.mktemp("bench") / "bench")


def wait_for(check: Callable[[], _T | None], *, timeout_s: float, what: str, interval_s: float = 0.2) -> _T:
    """Poll ``check`` until it returns something truthy; fail the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, read from /proc (no psutil here)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def gkd_env(base: dict[str, str] | None = None, **values: Any) -> dict[str, str]:
    """A child environment: this one without GKD_* leftovers, plus ``values`` as GKD_<NAME> (lists as JSON)."""
    env = {k: v for k, v in (base or os.environ).items() if not k.startswith("GKD_")}
    env.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"})
    for name, value in values.items():
        text = json.dumps([str(v) for v in value]) if isinstance(value, list | tuple) else str(value)
        env[f"GKD_{name.upper()}"] = text
    return env


@dataclass
class WorkerProcess:
    """One ``celery worker`` (prefork, concurrency 1) in its own session/process group."""

    env: dict[str, str]
    log: Path
    name: str = "w1"
    queues: str = "gpu"  # what ``--queues`` reads: comma-separated queue names
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def node_name(self) -> str:
        """The worker's Celery node name (``name@host``), as the job's events record it."""
        return f"{self.name}@{socket.gethostname()}"

    def start(self) -> WorkerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker",
            "--queues", self.queues, "--concurrency", "1", "--loglevel", "INFO",
            "--hostname", f"{self.name}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait for Celery's 'ready' line (the sweeper starts then too)."""

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"worker exited with {self.process.returncode}:\n{self.tail()}")
            return " ready." in self.log.read_text(errors="replace")

        wait_for(ready, timeout_s=timeout_s, what=f"worker {self.name} to be ready", interval_s=0.25)

    def kill_group(self) -> None:
        """SIGKILL the worker and every process it forked (a machine losing power, as far as the job knows)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        except ProcessLookupError:
            pass

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@pytest.fixture
def worker_processes() -> Iterator[list[WorkerProcess]]:
    """Collects the workers a test starts and stops whatever is still running afterwards."""
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.stop()


@dataclass
class ServerProcess:
    """A server command (the API under uvicorn, or ``gkd serve``) in its own process group, logging to a file."""

    command: list[str]
    env: dict[str, str]
    log: Path
    url: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> ServerProcess:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_healthy(self, timeout_s: float = 60.0) -> None:
        import httpx

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.tail()}")
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, timeout_s=timeout_s, what=f"{self.url}/healthz", interval_s=0.25)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
        """Signal the server itself (not its group: it must stop its own children), then kill the group."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def kill_group(self) -> None:
        """Whatever is left in the group (after a failed test), SIGKILL."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def uvicorn_command(port: int) -> list[str]:
    """The API as production runs it: uvicorn with the app factory."""
    return [
        sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip

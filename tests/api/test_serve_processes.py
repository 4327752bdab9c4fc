"""``python -m api`` serves with GKD_API_WORKERS processes (default: one per core in production, one embedded)."""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import sys
from pathlib import Path

import httpx

from api.__main__ import parse_args
from service.settings import Settings
from tests.support.ports import free_ports
from tests.support.worker_env import ServerProcess, gkd_env, wait_for


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """Child processes of ``pid`` that are uvicorn workers (multiprocessing spawn children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if ppid == pid and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def test_default_process_count() -> None:
    cores = len(os.sched_getaffinity(0))
    secret = secrets.token_hex(16)
    assert Settings(mode="production", secret_key=secret).resolved_api_workers == cores
    assert Settings(mode="embedded").resolved_api_workers == 1
    assert Settings(mode="production", secret_key=secret, api_workers=3).resolved_api_workers == 3
    assert parse_args([]).workers is None and parse_args(["--workers", "2"]).workers == 2


def test_two_worker_processes_both_answer(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    env = gkd_env(
        mode="production",
        secret_key=secrets.token_hex(24),
        database_url=f"sqlite:///{tmp_path / 'gkd.db'}",
        broker_url="memory://",
        data_dir=tmp_path,
        api_workers=2,
    )
    url = f"http://127.0.0.1:{port}"
    server = ServerProcess([sys.executable, "-m", "api", "--port", str(port)], env, tmp_path / "api.log", url)
    try:
        server.start().wait_healthy()
        assert server.process is not None
        supervisor = server.process.pid

        def two_workers() -> list[int] | None:
            found = _children(supervisor)
            return found if len(found) == 2 else None

        workers = wait_for(two_workers, timeout_s=30, what="two uvicorn worker processes")
        before = {pid: _cpu_seconds(pid) for pid in workers}

        def burst(_: int) -> None:
            for _ in range(50):  # a new connection each time, so the kernel hands them to either process
                assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(burst, range(8)))
        used = {pid: _cpu_seconds(pid) - before[pid] for pid in workers}
        # 400 requests cost each process far more than its idle loop (a few ms): both answered some.
        assert all(seconds >= 0.03 for seconds in used.values()), (used, server.tail())
        log = (tmp_path / "api.log").read_text()
        assert log.count("Application startup complete") >= 2, log
    finally:
        server.stop()
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers), "worker processes outlived the server"

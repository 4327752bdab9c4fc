"""``python -m api`` serves with GKD_API_WORKERS processes (default: one per core in production, one embedded)."""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import sys
from pathlib import Path

import httpx

from api.__main__ import parse_args
from service.auth import create_api_key
from service.db import make_engine, session_factory, session_scope
from service.models import Base
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


def _two_process_server(tmp_path: Path, database_url: str) -> tuple[ServerProcess, str]:
    """``python -m api`` with two workers in production mode on a free port (not started); and its URL."""
    (port,) = free_ports(1)
    env = gkd_env(
        mode="production",
        secret_key=secrets.token_hex(24),
        database_url=database_url,
        broker_url="memory://",
        data_dir=tmp_path,
        api_workers=2,
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # python -m api chooses it
    url = f"http://127.0.0.1:{port}"
    return ServerProcess([sys.executable, "-m", "api", "--port", str(port)], env, tmp_path / "api.log", url), url


def test_default_process_count() -> None:
    cores = len(os.sched_getaffinity(0))
    secret = secrets.token_hex(16)
    assert Settings(mode="production", secret_key=secret).resolved_api_workers == cores
    assert Settings(mode="embedded").resolved_api_workers == 1
    assert Settings(mode="production", secret_key=secret, api_workers=3).resolved_api_workers == 3
    assert parse_args([]).workers is None and parse_args(["--workers", "2"]).workers == 2


def test_two_worker_processes_both_answer(tmp_path: Path) -> None:
    server, url = _two_process_server(tmp_path, f"sqlite:///{tmp_path / 'gkd.db'}")
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


def test_metrics_count_the_requests_of_every_worker_process(tmp_path: Path) -> None:
    """A scrape reaches one process; with two, it must still report what both served (multiprocess mode)."""
    database_url = f"sqlite:///{tmp_path / 'gkd.db'}"
    engine = make_engine(url=database_url)
    Base.metadata.create_all(engine)
    with session_scope(session_factory(engine)) as session:
        key, _ = create_api_key(session=session, team_name="metrics", admin=True)  # /metrics is for operators
    engine.dispose()
    server, url = _two_process_server(tmp_path, database_url)
    try:
        server.start().wait_healthy()
        assert server.process is not None
        supervisor = server.process.pid
        wait_for(lambda: _children(supervisor) if len(_children(supervisor)) == 2 else None, timeout_s=30,
                 what="two uvicorn worker processes")  # fmt: skip

        headers = {"Authorization": f"Bearer {key}"}

        def healthz_served() -> float:
            text = httpx.get(f"{url}/metrics", headers=headers, timeout=10).raise_for_status().text
            assert 'gkd_jobs{state="queued"} 0.0' in text  # the database gauge, once, from the scraped process
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("gkd_http_requests_total{") and 'route="/healthz"' in line
            )

        before = healthz_served()  # wait_healthy's own probes

        def burst(_: int) -> None:
            for _ in range(25):  # new connections: the kernel spreads them over both processes
                assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(burst, range(8)))
        for _ in range(6):  # each scrape on a new connection, so both processes answer some
            assert healthz_served() == before + 200, server.tail()
    finally:
        server.stop()

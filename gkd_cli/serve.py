"""Embedded mode: the API and one Celery worker on one machine, with nothing to set up.

Everything lives in one data folder: the SQLite database, the SQLite-backed broker (kombu's
SQLAlchemy transport, so no Redis), the artifact folder, the worker's scratch space and the local
team's API key (``DIR/api-key``, mode 0600). The worker is a child process; when the API stops,
the worker stops with it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from service.settings import Settings, get_settings

_logger = logging.getLogger(__name__)
LOCAL_TEAM = "local"
KEY_FILE = "api-key"


@dataclass(frozen=True)
class EmbeddedPaths:
    """Where embedded mode keeps things."""

    data_dir: Path

    @property
    def key_file(self) -> Path:
        return self.data_dir / KEY_FILE

    @property
    def logs(self) -> Path:
        return self.data_dir / "logs"


def embedded_environment(data_dir: Path) -> dict[str, str]:
    """Environment for the API and worker processes: embedded mode rooted at ``data_dir``."""
    env = dict(os.environ)
    env.setdefault("GKD_MODE", "embedded")
    env["GKD_DATA_DIR"] = str(data_dir)
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def prepare(data_dir: Path) -> tuple[Settings, str]:
    """Create the data folder, migrate the database, and make sure the local team has a key."""
    from service.auth import authenticate, create_api_key
    from service.db import make_engine, session_factory, session_scope, upgrade_database
    from service.errors import Unauthorized

    data_dir.mkdir(parents=True, exist_ok=True)
    os.environ.update({k: v for k, v in embedded_environment(data_dir).items() if k.startswith(("GKD_", "HF_"))})
    get_settings.cache_clear()
    settings = get_settings()
    upgrade_database(settings)
    paths = EmbeddedPaths(data_dir)
    engine = make_engine(settings)
    try:
        with session_scope(session_factory(engine)) as session:
            if paths.key_file.is_file():
                key = paths.key_file.read_text().strip()
                try:
                    authenticate(session=session, key=key)
                    return settings, key
                except Unauthorized:
                    _logger.warning("%s holds a key this database does not know; writing a new one", paths.key_file)
            key, _ = create_api_key(session=session, team_name=LOCAL_TEAM)
    finally:
        engine.dispose()
    write_key_file(paths.key_file, key)
    return settings, key


def write_key_file(path: Path, key: str) -> None:
    """Write the key readable by its owner only (created 0600, never world-readable for a moment)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def start_worker(data_dir: Path, settings: Settings) -> subprocess.Popen[bytes]:
    """Start one Celery worker process (one job at a time) logging to ``DIR/logs/worker.log``."""
    paths = EmbeddedPaths(data_dir)
    paths.logs.mkdir(parents=True, exist_ok=True)
    log = open(paths.logs / "worker.log", "ab")  # noqa: SIM115 - handed to the child for its lifetime
    command = [
        sys.executable, "-m", "celery", "-A", "worker.celery_app:app", "worker",
        "--queues", ",".join(settings.queues), "--concurrency", "1", "--loglevel", "INFO",
        "--hostname", f"gkd-embedded-{os.getpid()}@%h", "--without-gossip", "--without-mingle",
    ]
    return subprocess.Popen(
        command,
        env=embedded_environment(data_dir),
        stdout=log,
        stderr=subprocess.STDOUT,
        # If `gkd serve` dies without cleaning up, the worker gets SIGTERM instead of living on; its own
        # process group lets stop_worker kill the pool processes too if a warm shutdown hangs.
        preexec_fn=_worker_preexec,
        start_new_session=True,
    )


def _worker_preexec() -> None:
    from worker.shutdown import die_with_parent

    die_with_parent(signal.SIGTERM)


def stop_worker(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """Warm shutdown first (a running job checkpoints and is requeued for the next start), then kill."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _logger.warning("worker %d did not stop in %.0f s; killing its process group", process.pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def serve(host: str, port: int, data_dir: Path) -> None:
    """Run the API in this process and the worker beside it until interrupted."""
    import uvicorn

    from api.main import serving_app

    data_dir = data_dir.expanduser().resolve()
    settings, _ = prepare(data_dir)
    worker = start_worker(data_dir, settings)
    try:
        uvicorn.run(serving_app(), host=host, port=port, log_level="info")
    finally:
        stop_worker(worker)

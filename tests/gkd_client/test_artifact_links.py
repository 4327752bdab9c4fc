"""Artifact links from the SDK and ``gkd download --link``, over local storage and a real S3 server."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from gkd_cli.cli import app
from gkd_client import Client, NotFoundError
from tests.support.live_api import LiveServer, live_server, spec
from tests.support.seaweed import SeaweedS3

WEIGHTS = bytes(range(256)) * 300


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory, seaweed_s3: SeaweedS3) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("api-s3"), env=seaweed_s3.env("gkd-links", "api")) as running:
        yield running


def _finished_job(server: LiveServer, name: str) -> str:
    job = Client(server.url, server.api_key).submit_job(spec(name))
    server.start(job.id)
    server.succeed(job.id, {"student.onnx": ("onnx", WEIGHTS)})
    return job.id


def test_a_presigned_link_downloads_without_the_key_under_the_artifacts_name(s3_server: LiveServer) -> None:
    job_id = _finished_job(s3_server, "s3-link")
    before = datetime.now(UTC)
    link = Client(s3_server.url, s3_server.api_key).artifact_link(job_id, "student.onnx")
    assert not link.requires_key and link.url.startswith("http") and "X-Amz-Signature" in link.url
    assert link.sha256 == hashlib.sha256(WEIGHTS).hexdigest() and link.size == len(WEIGHTS)
    assert link.expires_at is not None and link.expires_at - before >= timedelta(seconds=3599)
    answer = httpx.get(link.url)  # no Authorization header at all
    assert answer.status_code == 200 and answer.content == WEIGHTS
    assert answer.headers["content-disposition"] == 'attachment; filename="student.onnx"'
    with pytest.raises(NotFoundError):
        Client(s3_server.url, s3_server.api_key).artifact_link(job_id, "missing.onnx")


def test_gkd_download_link_prints_the_url_alone(
    s3_server: LiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    job_id = _finished_job(s3_server, "cli-link")
    monkeypatch.setenv("GKD_URL", s3_server.url)
    monkeypatch.setenv("GKD_API_KEY", s3_server.api_key)
    runner = CliRunner()
    result = runner.invoke(app, ["download", job_id, "student.onnx", "--link"])
    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert "\n" not in url and httpx.get(url).content == WEIGHTS
    assert "anyone with this URL can download student.onnx until" in result.stderr
    as_json = json.loads(runner.invoke(app, ["download", job_id, "student.onnx", "--link", "--json"]).stdout)
    assert as_json["requires_key"] is False and as_json["name"] == "student.onnx"
    for wrong in (["download", job_id, "--link"], ["download", job_id, "student.onnx", "--link", "-o", "x"]):
        refused = runner.invoke(app, wrong)
        assert refused.exit_code == 2 and "--link needs an artifact NAME" in refused.stderr
    assert not list(tmp_path.iterdir())


def test_a_local_store_link_is_the_download_route_and_needs_the_key(server: LiveServer) -> None:
    job_id = _finished_job(server, "local-link")
    client = Client(server.url, server.api_key)
    link = client.artifact_link(job_id, "student.onnx")
    assert link.requires_key and link.expires_at is None
    assert link.url == f"{server.url}/v1/jobs/{job_id}/artifacts/student.onnx"
    assert httpx.get(link.url).status_code == 401
    keyed = httpx.get(link.url, headers={"Authorization": f"Bearer {server.api_key}"})
    assert keyed.status_code == 200 and keyed.content == WEIGHTS

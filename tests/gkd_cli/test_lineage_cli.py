"""``gkd status`` and ``gkd events`` show the licence lineage the server records at submission."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gkd_cli.cli import app
from gkd_client import Client
from tests.support.live_api import LiveServer, spec


def test_status_names_the_weights_licences_and_the_warning(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GKD_URL", server.url)
    monkeypatch.setenv("GKD_API_KEY", server.api_key)
    monkeypatch.setenv("COLUMNS", "250")
    job = Client(server.url, server.api_key).submit_job(
        spec("dinov3-teacher", teacher={"model": "vit_small_patch16_dinov3", "weights": "timm"}, method="kd")
    )
    assert job.lineage is not None and job.lineage["teacher"]["commercial"] == "restricted"
    runner = CliRunner()
    status = runner.invoke(app, ["status", job.id])
    assert status.exit_code == 0, status.output
    assert "teacher weights" in status.stdout and "DINOv3 License (commercial use: restricted)" in status.stdout
    assert "student weights" in status.stdout and "none: none inherited (commercial use: n/a)" in status.stdout
    assert "warning" in status.stdout

    events = json.loads(runner.invoke(app, ["events", job.id, "--json"]).stdout)
    assert [e["type"] for e in events] == ["created", "warning"]
    assert "lineage: teacher vit_small_patch16_dinov3 (timm weights lvd1689m): DINOv3 License" in events[0]["message"]

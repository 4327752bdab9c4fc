"""``gkd notify-secret rotate`` and ``Client.rotate_notify_secret`` against a running API server."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from gkd_cli.cli import app
from gkd_client import Client
from service.notify.team_secret import signing_secret
from tests.support.live_api import LiveServer


def _server_secret(server: LiveServer) -> str:
    """The secret the server signs with now (derived on the server side)."""
    with server.session() as session:
        return signing_secret(session=session, team_id=server.team_id, server_key=server.settings.secret_key)


def test_rotate_prints_the_secret_the_server_signs_with(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GKD_URL", server.url)
    monkeypatch.setenv("GKD_API_KEY", server.api_key)
    runner = CliRunner()
    first = runner.invoke(app, ["notify-secret", "rotate"])
    assert first.exit_code == 0, first.output
    secret = first.stdout.strip().splitlines()[-1]
    assert secret.startswith("whsec_") and "not shown again" in first.stdout
    assert _server_secret(server) == secret
    as_json = runner.invoke(app, ["notify-secret", "rotate", "--json"])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["header"] == "GKD-Signature" and body["secret"] != secret
    assert _server_secret(server) == body["secret"]  # rotating replaced the old one


def test_the_sdk_rotates_and_a_bad_key_is_one_line(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with Client(server.url, server.api_key) as sdk:
        created = sdk.rotate_notify_secret()
    assert created.header == "GKD-Signature" and created.created_at is not None
    assert _server_secret(server) == created.secret
    monkeypatch.setenv("GKD_URL", server.url)
    monkeypatch.setenv("GKD_API_KEY", "gkd_000000000000_" + "x" * 43)
    refused = CliRunner().invoke(app, ["notify-secret", "rotate"])
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    assert "unknown or revoked API key" in refused.output

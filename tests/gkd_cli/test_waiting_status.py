"""``gkd status`` says why a queued job waits when its team is at a limit (and says nothing when none holds it)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gkd_cli.cli import app
from gkd_client import Client
from service import jobs
from service.team_limits import TeamLimits
from tests.support.live_api import LiveServer, spec


def test_status_shows_the_waiting_reason(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    client = Client(server.url, server.api_key)
    first, second = client.submit_job(spec("limit-first")), client.submit_job(spec("limit-second"))
    limits = TeamLimits(max_running_jobs=1)
    with server.session() as session:
        assert jobs.claim_job(session=session, job_id=first.id, limits=limits) is not None
        assert jobs.claim_job(session=session, job_id=second.id, limits=limits) is None
    assert client.get_job(second.id).waiting_reason == "waiting: team at its limit of 1 running job"

    monkeypatch.setenv("GKD_URL", server.url)
    monkeypatch.setenv("GKD_API_KEY", server.api_key)
    runner = CliRunner()
    waiting = runner.invoke(app, ["status", second.id])
    assert waiting.exit_code == 0, waiting.output
    line = next(row for row in waiting.stdout.splitlines() if row.startswith("waiting"))
    assert "team at its limit of 1 running job" in line
    running = runner.invoke(app, ["status", first.id])
    assert running.exit_code == 0 and not any(row.startswith("waiting") for row in running.stdout.splitlines())

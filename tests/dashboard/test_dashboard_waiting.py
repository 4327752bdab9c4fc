"""The dashboard's job page says why a queued job waits when its team is at a limit."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from gkd_client import Client
from service import jobs
from service.team_limits import TeamLimits
from tests.support.live_api import LiveServer, spec


def test_job_page_shows_the_waiting_reason(page: Page, server: LiveServer) -> None:
    client = Client(server.url, server.api_key)
    first, second = client.submit_job(spec("held-first")), client.submit_job(spec("held-second"))
    limits = TeamLimits(max_running_jobs=1)
    with server.session() as session:
        assert jobs.claim_job(session=session, job_id=first.id, limits=limits) is not None
        assert jobs.claim_job(session=session, job_id=second.id, limits=limits) is None

    page.goto(f"{server.url}/dashboard#/jobs/{second.id}")
    expect(page.locator("#job-status")).to_have_text("queued")
    expect(page.locator("#job-waiting")).to_have_text("waiting: team at its limit of 1 running job")
    page.goto(f"{server.url}/dashboard#/jobs/{first.id}")
    expect(page.locator("#job-status")).to_have_text("running")
    expect(page.locator("#job-waiting")).to_have_count(0)

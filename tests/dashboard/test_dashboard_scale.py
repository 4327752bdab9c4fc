"""The job list stays usable with 1000 jobs: the API pages it, the page renders one page at a time."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from service import jobs
from service.schemas import JobSpec
from tests.support.live_api import LiveServer, live_server, spec


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Its own server: 1000 jobs would change the counts the other dashboard tests check."""
    with live_server(tmp_path_factory.mktemp("scale")) as running:
        with running.session() as session:
            for i in range(1000):
                jobs.create_job(
                    session=session, team_id=running.team_id, spec=JobSpec.model_validate(spec(f"bulk-{i:04d}"))
                )
        yield running


def test_thousand_jobs_page_quickly(page: Page, server: LiveServer) -> None:
    started = time.monotonic()
    page.goto(f"{server.url}/dashboard")
    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(20)
    first_paint = time.monotonic() - started
    assert first_paint < 15.0, f"first page took {first_paint:.2f} s"  # a page of 20, not all 1000

    page.select_option("#filter-page_size", "100")
    page.click("#filters button[type=submit]")
    expect(rows).to_have_count(100)
    expect(rows.first).to_contain_text("bulk-0999")
    for expected_page in range(2, 11):
        page.click("#next-page")
        expect(page.locator("#page-no")).to_have_text(f"page {expected_page}")
    expect(rows).to_have_count(100)
    expect(rows.last).to_contain_text("bulk-0000")
    expect(page.locator("#next-page")).to_be_disabled()

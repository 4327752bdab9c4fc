"""The job page shows the licence lineage the server recorded at submission, warnings marked."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from gkd_client import Client
from tests.support.live_api import LiveServer, spec


def test_job_page_marks_the_licence_warning(page: Page, server: LiveServer) -> None:
    job = Client(server.url, server.api_key).submit_job(
        spec("dinov3-teacher", teacher={"model": "vit_small_patch16_dinov3", "weights": "timm"}, method="kd")
    )
    page.goto(f"{server.url}/dashboard#/jobs/{job.id}")
    expect(page.locator("#timeline .events li")).to_have_count(2)
    expect(page.locator("#timeline .events li.event-created")).to_contain_text("DINOv3 License")
    warning = page.locator("#timeline .events li.event-warning")
    expect(warning).to_have_count(1)
    expect(warning).to_contain_text("allows commercial use only under its own restrictions")

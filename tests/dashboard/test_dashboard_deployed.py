"""The job page shows each shipped file's per-domain mIoU beside PyTorch's and marks drift past the tolerance."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from gkd_client import Client
from service import jobs
from tests.support.live_api import LiveServer, spec
from worker.parity import fold_parity, parity_warnings


def _summary() -> dict[str, Any]:
    student: dict[str, dict[str, Any]] = {"night": {"miou": 0.412}, "fog": {"miou": 0.300}}
    deployed = {
        "onnx": {"night": {"miou": 0.412}, "fog": {"miou": 0.300}},
        "int8": {"night": {"miou": 0.405}, "fog": {"miou": 0.2995}},
    }
    fold_parity(student, deployed)
    return {"student": student, "references": {}, "averages": {}, "deployed": deployed}


def test_job_page_shows_deployed_files_and_marks_drift(page: Page, server: LiveServer) -> None:
    job = Client(server.url, server.api_key).submit_job(spec("deployed-parity"))
    server.start(job.id)
    summary = _summary()
    with server.session() as session:  # what the worker records when it publishes such a summary
        for message in parity_warnings(summary):
            jobs.record_event(session=session, job_id=job.id, message=message, type="parity")
    server.succeed(job.id, {}, summary)

    page.goto(f"{server.url}/dashboard#/jobs/{job.id}")
    table = page.locator("#deployed-table")
    expect(table.locator("thead")).to_contain_text("int8 diff (points)")
    expect(table.locator("tbody tr")).to_have_count(2)
    night = table.locator("tr[data-domain=night]")
    expect(night).to_contain_text("41.2")
    expect(night.locator("td.drift")).to_have_text("-0.70 ⚠")
    expect(table.locator("td.drift")).to_have_count(1)  # fog's INT8 is 0.05 points off: within tolerance
    expect(page.locator("#timeline .events li.event-parity")).to_contain_text("int8 parity on night")

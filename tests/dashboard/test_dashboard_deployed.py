"""The job page shows each shipped file's per-domain mIoU beside PyTorch's and marks drift past the tolerance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from gkd_client import Client
from gkd_core.robustness import build_report, write_report
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


def test_job_page_shows_the_robustness_report_and_its_chart(page: Page, server: LiveServer, tmp_path: Path) -> None:
    rows = {
        "student": {"fog": 0.30, "night": 0.25},
        "teacher": {"fog": 0.40, "night": 0.35},
        "student_frozen": {"fog": 0.20, "night": 0.15},
    }
    cka = {"student": {"fog": 0.81, "night": 0.72}, "student_frozen": {"fog": 0.5, "night": 0.4}}
    report = build_report(rows=rows, targets=["fog", "night"], source=None, similarity=cka, method="gkd")
    paths = write_report(tmp_path, report)  # the same writer a job's export uses
    job = Client(server.url, server.api_key).submit_job(spec("with-report"))
    server.start(job.id)
    artifacts = {p.name: ("report", p.read_bytes()) for p in paths.values()}
    server.succeed(
        job.id, artifacts, {"student": {d: {"miou": v} for d, v in rows["student"].items()}, "report": report}
    )

    page.goto(f"{server.url}/dashboard#/jobs/{job.id}")
    expect(page.locator("#report-lead")).to_contain_text("carries 50% of the teacher's lead")
    expect(page.locator("#cka-table tr[data-model=student]")).to_contain_text("0.810")
    expect(page.locator("#cka-table tbody tr")).to_have_count(2)
    chart = page.locator("#report-chart")
    expect(chart).to_be_visible()
    assert chart.evaluate("img => img.naturalWidth") > 300

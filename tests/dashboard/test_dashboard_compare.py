"""The dashboard's compare view in Chromium: pick jobs in the list, bars per domain, a URL that reproduces it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from gkd_client import Client
from tests.dashboard.conftest import SCREENSHOTS
from tests.support.live_api import SUMMARY, LiveServer, spec
from worker.parity import parity

KD_SUMMARY: dict[str, Any] = {
    "student": {"synth-fog": {"miou": 0.371}, "synth-night": {"miou": 0.402}},
    "references": {
        "teacher": {"synth-fog": {"miou": 0.523}, "synth-night": {"miou": 0.47}},  # the same teacher as SUMMARY's
        "student_frozen": {"synth-fog": {"miou": 0.25}, "synth-night": {"miou": 0.2}},
    },
}
ONNX_SUMMARY: dict[str, Any] = {
    "student": {
        "synth-fog": {"miou": 0.398, "onnx": parity(0.398, 0.3979)},
        "synth-night": {"miou": 0.31, "onnx": parity(0.31, 0.3101)},
    },
    "references": {},
}
NOT_A_JOB = "00000000-0000-0000-0000-000000000000"


@pytest.fixture(scope="module")
def jobs(server: LiveServer) -> dict[str, str]:
    """Three finished jobs with real summaries and one queued job with a hostile name."""
    client = Client(server.url, server.api_key)
    ids: dict[str, str] = {}
    for key, method, summary in (("gkd", "gkd", SUMMARY), ("kd", "kd", KD_SUMMARY), ("onnx", "gkd", ONNX_SUMMARY)):
        job = client.submit_job(spec(f"cmp-{key}", method=method))
        server.start(job.id)
        server.advance(job.id, "stage2", 1.0, steps=range(0, 4))
        server.succeed(job.id, {"student.safetensors": ("student", b"w" * 100)}, summary=summary)
        ids[key] = job.id
    ids["queued"] = client.submit_job(spec("<img src=x onerror=alert(1)> waiting")).id
    return ids


@pytest.fixture
def csp_errors(page: Page) -> list[str]:
    found: list[str] = []

    def seen(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Refused to" in message.text:
            found.append(message.text)

    page.on("console", seen)
    return found


def test_pick_two_jobs_in_the_list_and_compare_them(
    page: Page, server: LiveServer, jobs: dict[str, str], csp_errors: list[str]
) -> None:
    page.goto(f"{server.url}/dashboard")
    expect(page.locator("table.jobs tbody tr")).to_have_count(4)
    button = page.locator("#compare-selected")
    expect(button).to_be_disabled()
    page.check(f"input.pick[data-pick='{jobs['gkd']}']")
    expect(button).to_have_text("Compare selected (1)")
    page.check(f"input.pick[data-pick='{jobs['kd']}']")
    expect(button).to_be_enabled()
    page.screenshot(path=str(SCREENSHOTS / "dashboard_compare_pick.png"), full_page=True)
    button.click()

    expect(page).to_have_url(re.compile(rf"#/compare\?jobs={jobs['gkd']},{jobs['kd']}$"))
    bars = page.locator("#compare-chart rect.bar-rect")
    expect(bars).to_have_count(4)  # 2 jobs x 2 domains, side by side
    expect(page.locator(f"#compare-chart rect[data-job='{jobs['gkd']}'][data-domain=synth-fog] title")).to_have_text(
        "cmp-gkd on synth-fog: 41.2 mIoU"
    )
    expect(page.locator(f"#compare-chart rect[data-job='{jobs['kd']}'][data-domain=synth-night] title")).to_have_text(
        "cmp-kd on synth-night: 40.2 mIoU"
    )

    # Bars of one domain sit next to each other: the second job's bar starts right after the first's.
    def bar_x(job: str, domain: str) -> float:
        rect = page.locator(f"#compare-chart rect[data-job='{job}'][data-domain={domain}]")
        return float(rect.get_attribute("x") or 0)

    first, second = bar_x(jobs["gkd"], "synth-fog"), bar_x(jobs["kd"], "synth-fog")
    night = bar_x(jobs["gkd"], "synth-night")
    assert first < second < night

    table = page.locator("#compare-table tbody tr")
    expect(page.locator("#compare-table .student-row")).to_have_count(2)
    expect(page.locator("#compare-table tr[data-model=teacher]")).to_have_count(1)  # the same teacher, once
    expect(page.locator("#compare-table tr[data-model=teacher]")).to_contain_text("cmp-gkd, cmp-kd")
    expect(page.locator("#compare-table tr[data-model=student_frozen]")).to_have_count(2)
    expect(table.first).to_contain_text("41.2")
    expect(page.locator("#onnx-table")).to_have_count(0)  # no summary reports ONNX parity
    page.screenshot(path=str(SCREENSHOTS / "dashboard_compare.png"), full_page=True)
    assert not csp_errors


def test_the_url_reproduces_the_selection_with_onnx_and_waiting_jobs(
    page: Page, server: LiveServer, jobs: dict[str, str], csp_errors: list[str]
) -> None:
    picked = [jobs["gkd"], jobs["onnx"], jobs["queued"], NOT_A_JOB]
    page.goto(f"{server.url}/dashboard#/compare?jobs={','.join(picked)}")
    expect(page.locator("#compare-jobs tbody tr")).to_have_count(3)
    expect(page.locator("#compare-page .error")).to_contain_text(NOT_A_JOB)
    expect(page.locator("#compare-chart rect.bar-rect")).to_have_count(4)  # the queued job has no bars yet
    expect(page.locator("#compare-waiting")).to_contain_text("<img src=x onerror=alert(1)> waiting (queued)")
    assert page.locator("#compare-page img").count() == 0  # server text stays text
    onnx_rows = page.locator("#onnx-table tbody tr")
    expect(onnx_rows).to_have_count(1)
    expect(onnx_rows.first).to_contain_text("mIoU 39.8, -0.01 points")

    # Back in the list the compared jobs are ticked (not the missing one); the Compare tab opens them again.
    page.click("a[data-nav=jobs]")
    expect(page.locator("input.pick:checked")).to_have_count(3)
    expect(page.locator("#compare-selected")).to_have_text("Compare selected (3)")
    page.click(f"input.pick[data-pick='{jobs['queued']}']")
    page.click("#nav-compare")
    expect(page).to_have_url(re.compile(r"#/compare\?jobs="))
    expect(page.locator("#compare-jobs tbody tr")).to_have_count(2)

    page.click(f"#compare-jobs button.remove-job[data-job-id='{jobs['onnx']}']")
    expect(page).to_have_url(re.compile(rf"#/compare\?jobs={jobs['gkd']}$"))
    expect(page.locator("#compare-jobs tbody tr")).to_have_count(1)
    assert not csp_errors


def test_empty_selection_says_what_to_do(page: Page, server: LiveServer, jobs: dict[str, str]) -> None:
    page.goto(f"{server.url}/dashboard#/compare")
    expect(page.locator("#compare-empty")).to_contain_text("Tick two or more jobs")

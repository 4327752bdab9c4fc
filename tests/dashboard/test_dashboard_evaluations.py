"""The job page's evaluations: start one on more domains, see its per-domain rows with the shipped files'
parity, cancel one, and read the API's field errors, all in Chromium against the real API."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from gkd_client import Client
from gkd_core.robustness import build_report, write_report
from tests.support.live_api import SUMMARY, LiveServer, spec


def test_evaluate_a_finished_job_cancel_one_and_read_the_results(
    page: Page, server: LiveServer, tmp_path: Path
) -> None:
    client = Client(server.url, server.api_key)
    running = client.submit_job(spec("still-training"))
    server.start(running.id)
    page.goto(f"{server.url}/dashboard#/jobs/{running.id}")
    expect(page.locator("#eval-submit")).to_be_disabled()
    expect(page.locator("#eval-form")).to_contain_text("once it has succeeded")

    job = client.submit_job(spec("to-evaluate"))
    server.start(job.id)
    rows = {"student": {"fog": 0.30}, "teacher": {"fog": 0.40}, "student_frozen": {"fog": 0.20}}
    report = build_report(rows=rows, targets=["fog"], source=None, similarity={}, method="gkd")
    files = write_report(tmp_path, report)
    server.succeed(job.id, {p.name: ("report", p.read_bytes()) for p in files.values()}, {**SUMMARY, "report": report})
    chart_links: list[str] = []
    page.on("request", lambda request: chart_links.append(request.url) if "report.png:link" in request.url else None)
    page.goto(f"{server.url}/dashboard#/jobs/{job.id}")
    expect(page.locator("#no-evaluations")).to_be_visible()
    expect(page.locator("#report-chart")).to_be_visible()

    # A dataset the team never registered: the API's field error is shown, and the typed text stays.
    page.fill("#eval-targets", "not-registered:val")
    page.click("#eval-submit")
    expect(page.locator("#eval-error")).to_contain_text("targets.0")
    expect(page.locator("#eval-targets")).to_have_value("not-registered:val")

    # Queued (no worker takes it): the page polls, what is being typed survives the repaints, and it cancels.
    page.fill("#eval-targets", "synth-fog:val")
    page.click("#eval-submit")
    queued = page.locator(".evaluation[data-status=queued]")
    expect(queued).to_have_count(1)
    expect(queued.locator(".eval-targets")).to_have_text("synth-fog:val")
    expect(page.locator("#eval-error")).to_have_count(0)
    page.type("#eval-targets", "synth-ni")
    for _ in range(6):
        page.keyboard.press("ArrowLeft")  # the caret after "sy"
    page.wait_for_timeout(2600)  # past a 2 s refresh
    expect(page.locator("#eval-targets")).to_have_value("synth-ni")
    expect(page.locator("#eval-targets")).to_be_focused()
    page.keyboard.type("X")  # the caret stayed where it was through the repaint
    expect(page.locator("#eval-targets")).to_have_value("syXnth-ni")
    assert len(chart_links) == 1, chart_links  # repaints reuse the chart instead of fetching it again
    page.click(".evaluation[data-status=queued] .cancel-eval")
    expect(page.locator(".evaluation[data-status=cancelled]")).to_have_count(1)

    # A worker scores it: PyTorch's row, and the shipped ONNX file beside it, past the tolerance here.
    onnx = {"miou": 0.405, "diff_points": -0.70, "within_tolerance": False}
    server.finish_evaluations({"synth-night/val": {"miou": 0.412, "pixel_accuracy": 0.9, "images": 8, "onnx": onnx}})
    page.fill("#eval-targets", "synth-night:val")
    page.click("#eval-submit")
    done = page.locator(".evaluation[data-status=succeeded]")
    expect(done).to_have_count(1, timeout=60_000)
    row = done.locator("tr[data-domain='synth-night/val']")
    expect(row).to_contain_text("41.2")
    expect(row.locator("td.drift[data-kind=onnx]")).to_have_text("-0.70 ⚠")
    expect(done.locator("thead")).to_contain_text("onnx diff (points)")
    expect(page.locator(".evaluation")).to_have_count(2)  # newest first: the scored one, then the cancelled one
    assert page.locator(".evaluation").first.get_attribute("data-status") == "succeeded"

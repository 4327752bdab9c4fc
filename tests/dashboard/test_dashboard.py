"""The dashboard in a real browser (Debian Chromium via Playwright) against a live API server."""

from __future__ import annotations

import json
import re
from pathlib import Path

from playwright.sync_api import Browser, Page, expect

import gkd_catalog
from gkd_client import Client
from tests.dashboard.conftest import SCREENSHOTS
from tests.support.live_api import LiveServer, spec


def test_key_prompt_then_job_list_pages(browser: Browser, server: LiveServer, seeded: dict[str, str]) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{server.url}/dashboard")
    page.fill("#api-key", "gkd_000000000000_wrongwrongwrongwrongwrong")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-form .error")).to_contain_text("not accepted")
    page.fill("#api-key", server.api_key)
    page.click("#key-form button[type=submit]")

    rows = page.locator("table.jobs tbody tr")
    expect(rows).to_have_count(20)
    expect(page.locator("#next-page")).to_be_enabled()
    # Untrusted names are shown as text, never parsed as markup.
    expect(page.locator("table.jobs a", has_text="<img src=x onerror=alert(1)> queued")).to_have_count(1)
    assert page.locator("table.jobs img").count() == 0
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "dashboard_list.png"), full_page=True)

    page.click("#next-page")
    expect(page.locator("#page-no")).to_have_text("page 2")
    expect(rows).to_have_count(3)
    page.click("#prev-page")
    expect(rows).to_have_count(20)

    page.select_option("#filter-status", "failed")
    page.click("#filters button[type=submit]")
    expect(rows).to_have_count(5)
    expect(page.locator("table.jobs .badge")).to_have_text(["failed"] * 5)

    page.reload()  # the key was kept in the browser
    expect(page.locator("table.jobs")).to_be_visible()
    context.close()


def test_job_page_shows_curves_that_update_and_the_miou_chart(
    page: Page, server: LiveServer, seeded: dict[str, str], tmp_path: Path
) -> None:
    running = seeded["running"]
    page.goto(f"{server.url}/dashboard#/jobs/{running}")
    expect(page.locator("#job-name")).to_have_text("live-curves")
    expect(page.locator("svg.loss-chart[data-stage=stage1] polyline")).to_have_count(2)
    expect(page.locator(".phase-current")).to_have_text("stage1")
    before = page.locator("svg.loss-chart polyline[data-name=loss]").get_attribute("points") or ""

    server.advance(running, "stage1", 0.6, steps=range(20, 30))  # the worker logs more steps
    expect(page.locator("svg.loss-chart polyline[data-name=loss]")).not_to_have_attribute("points", before)
    points = page.locator("svg.loss-chart polyline[data-name=loss]").get_attribute("points") or ""
    assert len(points.split()) == 30

    done = seeded["done"]
    page.goto(f"{server.url}/dashboard#/jobs/{done}")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("svg.loss-chart")).to_have_count(2)
    expect(page.locator("#miou-chart rect.bar-rect")).to_have_count(6)  # 3 rows x 2 domains
    expect(page.locator("#miou-chart rect[data-model=student][data-domain=synth-fog] title")).to_have_text(
        re.compile(r"41\.2 mIoU")
    )
    expect(page.locator("#reference-table tbody tr")).to_have_count(3)
    expect(page.locator("#reference-table .student-row")).to_contain_text("41.2")
    expect(page.locator(".phase-done")).to_have_count(7)
    expect(page.locator("#cancel-job")).to_be_disabled()
    page.screenshot(path=str(SCREENSHOTS / "dashboard_job.png"), full_page=True)

    with page.expect_download() as info:
        page.click("button.download[data-artifact='student.safetensors']")
    saved = tmp_path / "student.safetensors"
    info.value.save_as(saved)
    assert saved.read_bytes() == b"\x00safetensors" * 2000


def test_bad_submission_shows_the_field_error_then_a_good_one_opens_the_job(
    page: Page, server: LiveServer, seeded: dict[str, str]
) -> None:
    page.goto(f"{server.url}/dashboard#/submit")
    # The selects are the server's catalogue, not a list kept in app.js (filled once GET /v1/catalog answers).
    expect(page.locator("#f-method option")).to_have_count(len(gkd_catalog.METHODS))
    expect(page.locator("#f-stage2-head option")).to_have_count(len(gkd_catalog.HEADS))
    methods = page.locator("#f-method option").evaluate_all("els => els.map(e => e.value)")
    heads = page.locator("#f-stage2-head option").evaluate_all("els => els.map(e => e.value)")
    assert methods == list(gkd_catalog.METHODS) and heads == list(gkd_catalog.HEADS)
    page.fill("#f-name", "from-the-form")
    page.fill("#f-source-dataset", "synth-source")
    page.fill("#f-targets", "synth-fog:val, not-registered:val")
    page.fill("#f-stage1-steps", "0")
    page.click("#submit-job")
    steps_error = page.locator(".field-error[data-error-for='stage1.steps']")
    expect(steps_error).to_be_visible()
    expect(page.locator("#f-stage1-steps")).to_have_class(re.compile("invalid"))
    # The message sits right after its input.
    assert page.locator("#f-stage1-steps + .field-error").count() == 1

    page.fill("#f-stage1-steps", "50")
    page.click("#submit-job")
    expect(page.locator(".field-error[data-error-for='targets.1.dataset']")).to_contain_text("not registered")
    expect(page.locator("#f-targets + .field-error")).to_be_visible()
    page.screenshot(path=str(SCREENSHOTS / "dashboard_submit.png"), full_page=True)

    page.check("#mode-json")
    text = page.locator("#spec-json").input_value()
    page.fill("#spec-json", text.replace('"seed": 0', '"seed": 0, "colour": "blue"'))
    page.click("#submit-job")
    expect(page.locator("#form-errors .field-error")).to_contain_text("colour")

    page.uncheck("#mode-json")
    page.fill("#f-targets", "synth-fog:val")
    page.click("#submit-job")
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#job-name")).to_have_text("from-the-form")
    job_id = page.url.rsplit("/", 1)[1]
    assert Client(server.url, server.api_key).get_job(job_id).spec["stage1"]["steps"] == 50


def test_a_long_finished_job_shows_its_whole_curves(page: Page, server: LiveServer) -> None:
    """More rows than one metrics page (10,000), over two stages whose steps both start at 0: the page reads
    them all through the cursor, not just the first page in step order."""
    client = Client(server.url, server.api_key)
    job = client.submit_job(spec("long-run"))
    server.start(job.id)
    server.advance(job.id, "stage1", 0.5, steps=range(0, 3000))  # two names per stage-1 step: 6,000 rows
    server.advance(job.id, "stage2", 0.9, steps=range(0, 6000))
    server.succeed(job.id, {})
    page.goto(f"{server.url}/dashboard#/jobs/{job.id}")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("svg.loss-chart[data-stage=stage2] text.tick").last).to_have_text("step 5999")
    expect(page.locator("svg.loss-chart[data-stage=stage1] text.tick").last).to_have_text("step 2999")
    points = page.locator("svg.loss-chart[data-stage=stage2] polyline[data-name=loss]").get_attribute("points")
    assert len((points or "").split()) == 6000


def test_the_training_log_opens_on_demand_and_survives_repaints(page: Page, server: LiveServer) -> None:
    from service.training_logs import log_key

    client = Client(server.url, server.api_key)
    job = client.submit_job(spec("logged"))
    server.start(job.id)  # running: the page repaints every 2 s
    page.goto(f"{server.url}/dashboard#/jobs/{job.id}")
    page.click("#training-log summary")
    expect(page.locator("#log-text")).to_contain_text("No training log yet")
    lines = "".join(f"step {i}\n" for i in range(300)) + "Traceback (most recent call last):\nValueError: bad crop\n"
    server.store.put_bytes(log_key(job.id, 1), lines.encode())
    page.click("#log-reload")
    expect(page.locator("#log-text")).to_contain_text("ValueError: bad crop")
    expect(page.locator("#log-text")).to_contain_text("attempt 1, last 200 lines")
    assert "step 0\n" not in (page.locator("#log-text").text_content() or "")  # only the end
    page.wait_for_timeout(2600)  # past a repaint
    expect(page.locator("#training-log")).to_have_attribute("open", "")
    expect(page.locator("#log-text")).to_contain_text("ValueError: bad crop")


def test_a_single_stage_method_greys_out_stage_1_and_does_not_send_it(
    page: Page, server: LiveServer, seeded: dict[str, str]
) -> None:
    page.goto(f"{server.url}/dashboard#/submit")
    expect(page.locator("#f-stage1-steps")).to_be_enabled()  # gkd: two stages
    page.select_option("#f-method", "kd")
    expect(page.locator("#f-stage1-steps")).to_be_disabled()
    expect(page.locator("#f-stage1-batch_size")).to_be_disabled()
    expect(page.locator("#f-stage2-steps")).to_be_enabled()
    page.check("#mode-json")
    assert "stage1" not in json.loads(page.locator("#spec-json").input_value())
    page.uncheck("#mode-json")
    page.fill("#f-name", "kd-from-the-form")
    page.fill("#f-source-dataset", "synth-source")
    page.fill("#f-targets", "synth-fog:val")
    page.click("#submit-job")
    expect(page).to_have_url(re.compile(r"#/jobs/[0-9a-f-]{36}$"))
    job = Client(server.url, server.api_key).get_job(page.url.rsplit("/", 1)[1])
    assert job.spec["method"] == "kd" and job.spec["stage2"]["steps"] == 1000
    page.goto(f"{server.url}/dashboard#/submit")
    page.select_option("#f-method", "none")
    page.select_option("#f-method", "gkd")
    expect(page.locator("#f-stage1-steps")).to_be_enabled()


def test_cancel_button_cancels_the_job(page: Page, server: LiveServer, seeded: dict[str, str]) -> None:
    queued = seeded["queued"]
    page.goto(f"{server.url}/dashboard#/jobs/{queued}")
    expect(page.locator("#job-status")).to_have_text("queued")
    page.click("#cancel-job")
    expect(page.locator("#job-status")).to_have_text("cancelled")
    expect(page.locator("#cancel-job")).to_be_disabled()
    assert Client(server.url, server.api_key).get_job(queued).status == "cancelled"
    expect(page.locator("#timeline .events li")).to_have_count(2)

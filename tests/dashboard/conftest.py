"""Fixtures: a real API server with seeded jobs, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from gkd_client import Client
from tests.support.live_api import LiveServer, live_server, spec

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Playwright's 5 s default is tight for Chromium beside the API on two slow cores (CI); a page that never
# shows what it should still fails, only later.
expect.set_options(timeout=15_000)

# Screenshots land in a scratch folder on every run; GKD_UPDATE_SCREENSHOTS=1 refreshes the ones in docs/.
SCREENSHOTS = (
    Path(__file__).resolve().parents[2] / "docs" / "images"
    if os.environ.get("GKD_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "gkd-dashboard-screenshots"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("dash")) as running:
        yield running


@pytest.fixture(scope="module")
def seeded(server: LiveServer) -> dict[str, str]:
    """25 jobs in assorted states: more than one page, one running with curves, one finished with results."""
    client = Client(server.url, server.api_key)
    ids: dict[str, str] = {}
    for i in range(20):
        job = client.submit_job(spec(f"sweep-{i:02d}", method="kd" if i % 3 else "gkd"))
        if i % 4 == 1:
            server.start(job.id)
            server.fail(job.id, "teacher weights not found")
        elif i % 4 == 2:
            server.start(job.id)
            server.advance(job.id, "stage1", 0.1 * (i % 10), steps=range(0, 3))
    done = client.submit_job(spec("dinov2s-to-deit-tiny-fog"))
    server.start(done.id)
    server.advance(done.id, "stage1", 1.0, steps=range(0, 60, 2))
    server.advance(done.id, "stage2", 1.0, steps=range(0, 40, 2))
    server.succeed(
        done.id,
        {
            "student.safetensors": ("student", b"\x00safetensors" * 2000),
            "student.onnx": ("onnx", b"onnx" * 1000),
            "model_card.md": ("model_card", b"# Student <script>alert(1)</script>\n"),
        },
    )
    running = client.submit_job(spec("live-curves"))
    server.start(running.id)
    server.advance(running.id, "stage1", 0.25, steps=range(0, 20))
    queued = client.submit_job(spec("<img src=x onerror=alert(1)> queued"))
    ids.update(done=done.id, running=running.id, queued=queued.id)
    return ids


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (see ENVIRONMENT.md)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, server: LiveServer) -> Iterator[Page]:
    """A fresh tab whose browser already holds the API key (the key prompt has its own test)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.add_init_script(f"localStorage.setItem('gkd.apiKey', {server.api_key!r});")
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("dialog", lambda dialog: dialog.accept())
    yield tab
    context.close()
    assert not errors, f"JavaScript errors: {errors}"

"""The dashboard over S3 storage (real SeaweedFS): downloads and the report chart come straight from the
bucket through presigned URLs, the API key never leaves for it, and the page's CSP admits exactly that origin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect

from gkd_client import Client
from gkd_core.robustness import build_report, write_report
from tests.support.live_api import LiveServer, live_server, spec
from tests.support.seaweed import SeaweedS3

STUDENT = b"\x01onnx-student" * 5000


@pytest.fixture(scope="module")
def s3_server(tmp_path_factory: pytest.TempPathFactory, seaweed_s3: SeaweedS3) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("dash-s3"), env=seaweed_s3.env("gkd-dashboard", "api")) as running:
        yield running


@pytest.fixture
def s3_page(browser: Browser, s3_server: LiveServer) -> Iterator[tuple[Page, list[Request]]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.add_init_script(f"localStorage.setItem('gkd.apiKey', {s3_server.api_key!r});")
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    requests: list[Request] = []
    context.on("request", lambda request: requests.append(request))
    yield tab, requests
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def test_downloads_and_the_chart_come_from_the_bucket_without_the_key(
    s3_page: tuple[Page, list[Request]], s3_server: LiveServer, seaweed_s3: SeaweedS3, tmp_path: Path
) -> None:
    page, requests = s3_page
    rows = {"student": {"fog": 0.30}, "teacher": {"fog": 0.40}, "student_frozen": {"fog": 0.20}}
    report = build_report(rows=rows, targets=["fog"], source=None, similarity={}, method="gkd")
    files = write_report(tmp_path / "report", report)
    job = Client(s3_server.url, s3_server.api_key).submit_job(spec("over-s3"))
    s3_server.start(job.id)
    artifacts = {"student.onnx": ("onnx", STUDENT), **{p.name: ("report", p.read_bytes()) for p in files.values()}}
    s3_server.succeed(job.id, artifacts, {"student": {"fog": {"miou": 0.30}}, "report": report})

    page.goto(f"{s3_server.url}/dashboard#/jobs/{job.id}")
    chart = page.locator("#report-chart")
    expect(chart).to_be_visible()  # an <img> from the bucket: the CSP's img-src names its origin
    assert chart.evaluate("img => img.naturalWidth") > 300
    with page.expect_download() as info:
        page.click("button.download[data-artifact='student.onnx']")
    download = info.value
    assert download.suggested_filename == "student.onnx"  # the presigned URL's Content-Disposition
    saved = tmp_path / "saved.onnx"
    download.save_as(saved)
    assert saved.read_bytes() == STUDENT

    bucket = urlsplit(seaweed_s3.endpoint_url).netloc
    to_bucket = [r for r in requests if urlsplit(r.url).netloc == bucket]
    assert {urlsplit(r.url).path.rsplit("/", 1)[-1] for r in to_bucket} >= {"report.png", "student.onnx"}
    assert all("authorization" not in r.all_headers() for r in to_bucket)
    api_paths = [urlsplit(r.url).path for r in requests if r.url.startswith(s3_server.url)]
    assert f"/v1/jobs/{job.id}/artifacts/student.onnx:link" in api_paths


def test_the_csp_admits_the_buckets_images_only_over_s3(s3_server: LiveServer, server: LiveServer) -> None:
    over_s3 = httpx.get(f"{s3_server.url}/dashboard").headers["content-security-policy"]
    local = httpx.get(f"{server.url}/dashboard").headers["content-security-policy"]
    endpoint = s3_server.settings.s3_endpoint_url
    assert endpoint is not None
    origin = f"{urlsplit(endpoint).scheme}://{urlsplit(endpoint).netloc}"
    assert f"img-src 'self' data: blob: {origin};" in over_s3
    assert "img-src 'self' data: blob:;" in local
    assert "connect-src 'self';" in local and "connect-src 'self';" in over_s3

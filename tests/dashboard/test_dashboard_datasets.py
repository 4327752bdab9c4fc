"""The Datasets page: the team's sets with status, size and problems; registering one, including a set the
server validates in the background (this module's server waits 0 s, so every registration is answered 202)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from gkd_client import Client
from gkd_core.data.synthetic import TINY_SIZES, generate_benchmark
from tests.support.live_api import LiveServer, live_server, spec


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with live_server(tmp_path_factory.mktemp("dash-data"), env={"GKD_DATASET_INLINE_VALIDATION_S": "0"}) as up:
        yield up


@pytest.fixture(scope="module")
def bench(server: LiveServer) -> Path:
    root = Path(server.settings.data_dir) / "bench"
    generate_benchmark(root, seed=0, size=32, sizes=TINY_SIZES, domains=["toon"])
    return root


def _register(page: Page, name: str, layout: str, uri: str) -> None:
    page.fill("#ds-name", name)
    page.select_option("#ds-layout", layout)
    page.fill("#ds-uri", uri)
    page.click("#ds-submit")


def test_list_register_and_follow_a_background_validation(page: Page, server: LiveServer, bench: Path) -> None:
    page.goto(f"{server.url}/dashboard#/datasets")
    expect(page.locator("#datasets-table tr[data-dataset]")).to_have_count(3)  # the server's own three
    expect(page.locator("tr[data-dataset=synth-fog]")).to_have_attribute("data-status", "valid")

    _register(page, "toon", "folder", (bench / "toon").as_uri())
    expect(page.locator("#ds-status")).to_have_text("registered toon: validating")
    row = page.locator("tr[data-dataset=toon]")
    expect(row).to_have_attribute("data-status", "valid", timeout=15_000)  # the page polls until it is done
    expect(row.locator("td.size")).to_have_text("train 8, val 4 pairs")

    _register(page, "toon-as-cityscapes", "cityscapes", (bench / "toon").as_uri())  # the wrong layout
    broken = page.locator("tr[data-dataset=toon-as-cityscapes]")
    expect(broken).to_have_attribute("data-status", "invalid", timeout=15_000)
    page.click("tr[data-problems=toon-as-cityscapes] summary")
    expect(page.locator("tr[data-problems=toon-as-cityscapes] li").first).to_contain_text("layout")

    _register(page, "outside", "folder", "file:///etc")  # refused at once: nothing stored
    expect(page.locator("#ds-errors")).to_contain_text(re.compile(r"uri: .*outside the allowed roots"))
    expect(page.locator("tr[data-dataset=outside]")).to_have_count(0)


def test_delete_a_dataset_and_read_why_one_in_use_is_kept(page: Page, server: LiveServer, bench: Path) -> None:
    client = Client(server.url, server.api_key)
    client.register_dataset("spare", layout="folder", uri=(bench / "toon").as_uri())
    client.wait_for_dataset("spare", timeout=30)
    job = client.submit_job(spec("reads-fog"))  # queued: no worker takes it, so synth-fog is in use
    page.on("dialog", lambda dialog: dialog.accept())
    page.goto(f"{server.url}/dashboard#/datasets")

    page.click("tr[data-dataset=spare] button[data-delete]")
    expect(page.locator("#datasets-notice")).to_contain_text("deleted dataset spare (its files are untouched)")
    expect(page.locator("tr[data-dataset=spare]")).to_have_count(0)
    assert (bench / "toon").is_dir()

    target = "synth-fog"  # one of the job's targets
    page.click(f"tr[data-dataset={target}] button[data-delete]")
    expect(page.locator("#datasets-notice")).to_contain_text(f"is read by job {job.id}")
    expect(page.locator(f"tr[data-dataset={target}]")).to_have_count(1)
    client.cancel_job(job.id)
    page.click(f"tr[data-dataset={target}] button[data-delete]")
    expect(page.locator(f"tr[data-dataset={target}]")).to_have_count(0)

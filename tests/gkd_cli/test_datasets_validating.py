"""``gkd data register`` on a set the server validates in the background: it waits by default, or not."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner, Result

from gkd_cli.cli import app
from gkd_client import Client
from tests.support.live_api import LiveServer, live_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that answers every registration at once: any validation outlasts a zero-second wait."""
    with live_server(tmp_path_factory.mktemp("api-validating"), env={"GKD_DATASET_INLINE_VALIDATION_S": "0"}) as up:
        yield up


@pytest.fixture(scope="module")
def image_set(server: LiveServer) -> Path:
    """An ImageNet-style tree of 4000 JPEGs inside the server's data folder (an allowed root)."""
    root = Path(server.settings.data_dir) / "inet"
    buffer = io.BytesIO()
    Image.fromarray(np.full((48, 64, 3), 90, dtype=np.uint8)).save(buffer, "JPEG")
    for c in range(20):
        folder = root / "train" / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(200):
            (folder / f"n{c:08d}_{i}.JPEG").write_bytes(buffer.getvalue())
    return root


def _gkd(server: LiveServer, *args: str) -> Result:
    env = {"GKD_URL": server.url, "GKD_API_KEY": server.api_key, "COLUMNS": "200"}
    return CliRunner().invoke(app, list(args), env=env)


def test_register_waits_for_a_background_validation(server: LiveServer, image_set: Path) -> None:
    args = ["data", "register", "inet", "--layout", "imagenet", "--uri", image_set.as_uri(), "--poll", "0.05"]
    result = _gkd(server, *args)
    assert result.exit_code == 0, result.output
    assert re.search(r"^status\s+valid\s*$", result.stdout, re.M) and "4000" in result.stdout
    assert Client(server.url, server.api_key).get_dataset("inet").valid


def test_no_wait_returns_while_it_validates(server: LiveServer, image_set: Path) -> None:
    args = ["data", "register", "inet-now", "--layout", "imagenet", "--uri", image_set.as_uri(), "--no-wait", "--json"]
    result = _gkd(server, *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["status"] == "validating"
    assert "still validating: gkd data show inet-now" in result.stderr
    done = Client(server.url, server.api_key).wait_for_dataset("inet-now", timeout=30, poll_s=0.05)
    assert done.valid and done.report.splits["train"].images == 4000
    shown = _gkd(server, "data", "show", "inet-now")
    assert shown.exit_code == 0 and re.search(r"^status\s+valid\s*$", shown.stdout, re.M)
    started = time.monotonic()
    assert Client(server.url, server.api_key).wait_for_dataset("inet-now", timeout=0).valid  # done: no wait
    assert time.monotonic() - started < 5

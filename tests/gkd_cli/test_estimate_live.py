"""``gkd submit --dry-run``: the server's estimate as a table (or JSON), and nothing submitted."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner, Result

from gkd_cli.cli import app
from gkd_client import Client
from tests.support.live_api import LiveServer, spec

Gkd = Callable[..., Result]


@pytest.fixture
def gkd(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Gkd:
    monkeypatch.setenv("GKD_URL", server.url)
    monkeypatch.setenv("GKD_API_KEY", server.api_key)
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def test_dry_run_prints_the_estimate_and_submits_nothing(gkd: Gkd, server: LiveServer, tmp_path: Path) -> None:
    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(yaml.safe_dump(spec("dry", references=["teacher"])))
    shown = gkd("submit", "--dry-run", str(spec_file))
    assert shown.exit_code == 0, shown.output
    assert "estimate (nothing submitted)" in shown.stdout
    rows = {line.split("│")[1].strip(): line for line in shown.stdout.splitlines() if line.count("│") > 4}
    assert {"stage1b", "ref_teacher", "stage2", "total"} <= set(rows)
    assert "40" in rows["stage1b"] and "GFLOP" in rows["stage1b"] and "GiB" in rows["stage2"]
    assert "No GPU kind has a throughput measurement yet" in shown.stdout

    raw = json.loads(gkd("submit", "--dry-run", str(spec_file), "--json").stdout)
    with Client(server.url, api_key=server.api_key) as sdk:
        typed = sdk.estimate_job(spec("dry", references=["teacher"]))
        assert sdk.list_jobs().items == []  # a dry run never creates a job
    assert raw == typed.raw and [p.stage for p in typed.phases] == ["stage1b", "ref_teacher", "stage2"]
    assert typed.total_flops == pytest.approx(sum(p.total_flops or 0 for p in typed.phases))

    kind = gkd("submit", "--dry-run", str(spec_file), "--gpu-kind", "TPU v9")
    assert kind.exit_code == 0 and "GPU-h TPU v9" in kind.stdout
    assert "GPU-hours on TPU v9: GPU kind 'TPU v9' has no throughput measurement" in kind.stdout


def test_dry_run_of_an_invalid_spec_is_one_line(gkd: Gkd, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(spec("bad", source={"dataset": "nope", "split": "train"})))
    result = gkd("submit", "--dry-run", str(bad))
    assert result.exit_code != 0 and "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "nope" in lines[0]

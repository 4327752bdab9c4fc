"""``gkd data synth`` and ``gkd data validate``: exit codes and output."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from gkd_cli.cli import app
from tests.gkd_core.data import fixtures as fx

runner = CliRunner()


def test_synth_then_validate(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = runner.invoke(app, ["data", "synth", "--out", str(out), "--tiny", "--size", "64", "--pool-train", "3",
                                 "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["domains"]["pool"]["splits"] == {"train": 3, "val": 4}
    assert (out / "toon" / "images" / "train" / "toon_train_00000.png").is_file()
    result = runner.invoke(app, ["data", "validate", str(out / "night"), "--layout", "folder"])
    assert result.exit_code == 0 and "ok" in result.output


def test_validate_reports_problems_with_exit_1(tmp_path: Path) -> None:
    fx.folder(tmp_path)
    (tmp_path / "masks" / "train" / "f0.png").unlink()
    result = runner.invoke(app, ["data", "validate", str(tmp_path), "--layout", "folder", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["problem_counts"] == {"missing_mask": 1}


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "validate", str(tmp_path), "--layout", "voc"])
    assert result.exit_code == 2 and "unknown dataset layout 'voc'" in result.output
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path), "--size", "4"])
    assert result.exit_code == 2 and "size must be between" in result.output and "Traceback" not in result.output

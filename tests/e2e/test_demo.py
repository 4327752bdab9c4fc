"""The README's first command, at its --quick size: serve, benchmark, teacher job, GKD job, table, download."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gkd_core.export import load_student


@pytest.mark.e2e
def test_demo_quick_runs_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "gkd_cli.cli", "demo", "--quick", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "mIoU % per domain" in out
    for row in ("GKD student", "ref: teacher", "ref: student_frozen"):
        assert row in out, out
    for domain in ("clear", "night", "fog", "sensor", "retro"):
        assert domain in out
    assert "teacher's lead carried:" in out
    student = tmp_path / "gkd-student.safetensors"
    _model, meta = load_student(student)
    assert meta.num_classes == 8 and meta.method == "gkd"
    # Running it again reuses the finished jobs (idempotency keys derived from the specs).
    again = subprocess.run(
        [sys.executable, "-m", "gkd_cli.cli", "demo", "--quick", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert again.returncode == 0, again.stdout[-3000:]
    key = (tmp_path / "data" / "api-key").read_text().strip()
    assert key.startswith("gkd_") and oct((tmp_path / "data" / "api-key").stat().st_mode & 0o777) == "0o600"

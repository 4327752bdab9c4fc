"""Plumbing of bench/reproduce.py at the tiny size: every arm gives per-domain numbers, files are written.

This checks wiring (benchmark, teacher pretraining and reload, every arm, JSON, table, chart), not
the scientific outcome: the tiny size trains for two steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from bench.reproduce import main, parse_args
from bench.reproduce_config import ARM_NAMES

DOMAINS = {"clear", "night", "fog", "sensor", "retro", "toon"}


def test_tiny_comparison_writes_every_arm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    md = tmp_path / "RESULTS.md"
    chart = tmp_path / "chart.png"
    results = main(["--out", str(tmp_path / "out"), "--size", "tiny", "--results-md", str(md), "--chart", str(chart)])

    written = json.loads((tmp_path / "out" / "results.json").read_text())
    assert written["settings"]["seeds"] == 1
    assert set(written["arms"]) == set(ARM_NAMES)
    for arm, data in written["arms"].items():
        per_domain = data["seeds"]["0"]
        assert set(per_domain) == DOMAINS, arm
        assert all(0.0 <= v <= 1.0 and not math.isnan(v) for v in per_domain.values()), arm
        assert set(written["summary"][arm]) >= DOMAINS | {"target_avg", "gap"}
    # The teacher's backbone file reloads (reproduce_run.check_loads compared every tensor).
    assert Path(written["teacher_pretrain"]["weights"]).is_file()
    assert results["summary"].keys() == written["summary"].keys()

    text = md.read_text()
    for label in ("teacher (frozen + head)", "+ GKD", "GKD without L_mask", "target avg", "source (toon)"):
        assert label in text
    assert text.count("\n| ") >= len(ARM_NAMES) + 1  # header + one row per arm
    with Image.open(chart) as img:
        assert img.size[0] >= 640

    # A second call reuses every finished run instead of training again.
    again = main(["--out", str(tmp_path / "out"), "--size", "tiny", "--arms", "gkd", "--results-md", str(md)])
    assert again["arms"]["gkd"]["seeds"]["0"] == written["arms"]["gkd"]["seeds"]["0"]


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--arms", "nope"])
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--seeds", "0"])
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--quick", "--size", "tiny"])

"""Plumbing of bench/reproduce.py at the tiny size: a two-budget sweep gives per-domain numbers and the report.

This checks wiring (benchmark, teacher pretraining and reload, compute-matched arms per budget, CKA
from the runs' reports, lead carried, verdicts, JSON, markdown, charts), not the scientific outcome:
the tiny size trains for a few steps.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from bench.reproduce import main, parse_args
from bench.reproduce_budget import arm_budget, matched_images
from bench.reproduce_config import ARMS as ARM_ROWS
from bench.reproduce_config import PRESETS, TINY, SizePreset
from bench.reproduce_run import Bench, arm_config

DOMAINS = {"clear", "night", "fog", "sensor", "retro", "toon"}
TARGETS = DOMAINS - {"toon"}
# One arm of each budget rule: frozen references, single-stage (fine-tuned, teacher logits), proxy-only,
# both stage-1 steps, 1b only; enough for two ablations (QSD is left out to keep the test short).
ARMS = ["teacher", "none_frozen", "none_finetuned", "kd", "proteus", "gkd", "gkd_no_proxy"]


def test_tiny_sweep_over_two_budgets_writes_the_evidence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out, md, chart = tmp_path / "out", tmp_path / "RESULTS.md", tmp_path / "charts" / "r.png"
    argv = ["--out", str(out), "--size", "tiny", "--stage1-budgets", "1", "2", "--arms", *ARMS]
    results = main([*argv, "--results-md", str(md), "--chart", str(chart), "--threads", "1"])

    written = json.loads((out / "results.json").read_text())
    assert written["settings"]["stage1_budgets"] == [1, 2] and written["settings"]["device"] == "cpu"
    assert set(written["budgets"]) == {"1", "2"}
    for budget, data in written["budgets"].items():
        assert set(data["arms"]) == set(ARMS), budget
        for arm, row in data["arms"].items():
            per_domain = row["seeds"]["0"]
            assert set(per_domain) == DOMAINS, (budget, arm)
            assert all(0.0 <= v <= 1.0 and not math.isnan(v) for v in per_domain.values()), (budget, arm)
        # Compute matching: every trained arm sees full GKD's images; the frozen references keep stage 2.
        plans = data["arm_budgets"]
        total = matched_images(TINY, int(budget))
        assert total == 2 * int(budget) * 4 + 1 * 4  # tiny: stage-1 batch 4, one stage-2 step at batch 4
        assert plans["kd"]["stage2_steps"] == plans["none_finetuned"]["stage2_steps"] == total // 4
        for arm in ("none_finetuned", "kd", "proteus", "gkd", "gkd_no_proxy"):
            assert plans[arm]["images"] == total, (budget, arm)
        assert plans["proteus"]["proxy_steps"] == 2 * int(budget) and plans["gkd_no_proxy"]["proxy_steps"] == 0
        assert plans["none_frozen"]["stage2_steps"] == 1 and not plans["none_frozen"]["depends_on_budget"]
        # CKA to the teacher comes from each run's report, per target domain, for the distilled students.
        for arm in ("proteus", "gkd", "gkd_no_proxy", "none_frozen"):
            assert set(data["arms"][arm]["cka"]["0"]) >= TARGETS, (budget, arm)
        assert data["arms"]["teacher"]["cka"]["0"] == {}
    # The frozen no-KD run (with the teacher reference) ran once and serves both budgets.
    assert (out / "runs" / "seed0" / "none_frozen" / "reproduce_result.json").is_file()
    assert not (out / "runs" / "stage1-1" / "seed0" / "none_frozen").exists()
    assert written["budgets"]["1"]["arms"]["teacher"] == written["budgets"]["2"]["arms"]["teacher"]

    evidence = written["evidence"]
    assert set(evidence["lead"]["1"]) == set(ARMS) - {"teacher", "none_frozen"}
    assert evidence["cka_n"] == 3 * 2 * len(TARGETS)  # three two-stage arms x two budgets x five targets
    assert {(v["ablation"], v["budget"]) for v in evidence["verdicts"]} == {
        ("step 1a", 1),
        ("step 1a", 2),
    }
    assert all(v["verdict"] == "not separable at this scale" for v in evidence["verdicts"])  # one seed
    assert results["summary"].keys() == written["summary"].keys()

    text = md.read_text()
    for needle in ("## Compute matching", "## Stage-1 budget 1", "## Stage-1 budget 2", "lead carried", "Pearson r"):
        assert needle in text
    assert "## Ablations: verdicts" in text and "| step 1a | 2 |" in text
    for name in ("r_b1.png", "r_b2.png", "r_budget.png", "r_cka.png"):
        with Image.open(chart.parent / name) as img:
            assert img.size[0] >= 600, name

    # A second call reuses every finished run instead of training again.
    again = main(
        ["--out", str(out), "--size", "tiny", "--stage1-budgets", "2", "--arms", "gkd", "--results-md", str(md)]
    )
    assert again["budgets"]["2"]["arms"]["gkd"]["seeds"]["0"] == written["budgets"]["2"]["arms"]["gkd"]["seeds"]["0"]
    # A training run states its own wall time and threads; a report-only run cannot, and says so.
    assert "wall time" in text and "(1 torch threads)" in text
    only = tmp_path / "ONLY.md"
    main(
        ["--out", str(out), "--size", "tiny", "--stage1-budgets", "1", "2", "--report-only", "--results-md", str(only)]
    )
    header = only.read_text().splitlines()[2]
    assert "report written" in header and "torch threads)" not in header


def test_bad_arguments_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    for argv in (
        ["--arms", "nope"],
        ["--seeds", "0"],
        ["--quick", "--size", "tiny"],
        ["--stage1-budgets", "0"],
        ["--sweep", "--stage1-budgets", "5"],
        ["--via-api", "http://x", "--stage1-budgets", "1", "2"],
        ["--device", "tpu"],
    ):
        with pytest.raises(SystemExit):
            parse_args(["--out", "x", *argv])
    # CUDA is refused clearly where torch sees none (the CI machines have none; forced off for GPU hosts).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        parse_args(["--out", "x", "--device", "cuda"])
    assert parse_args(["--out", "x", "--device", "cuda", "--estimate"]).device == "cuda"


@pytest.mark.parametrize("preset", PRESETS.values(), ids=lambda p: f"{p.name}-size")
def test_every_arm_config_is_valid_at_every_preset(preset: SizePreset, tmp_path: Path) -> None:
    """The configs of every arm build (ExperimentConfig validates them) with the device and matched steps."""
    bench = Bench(root=tmp_path, source="toon", targets=sorted(TARGETS), pool="pool")
    for arm in ARM_ROWS:
        budget = arm_budget(arm, preset, preset.stage1_budget)
        cfg = arm_config(
            arm,
            bench=bench,
            preset=preset,
            budget=budget,
            teacher_weights=tmp_path / "t.safetensors",
            student_weights=tmp_path / "s.safetensors",
            seed=1,
            with_teacher_ref=arm.run_key == "none_frozen",
            device="cuda",
        )
        assert (cfg.device, cfg.precision, cfg.similarity_images) == (
            "cuda",
            preset.precision,
            preset.similarity_images,
        )
        assert cfg.stage2.steps == budget.stage2_steps and cfg.stage2.num_workers == preset.num_workers
        if budget.proxy_steps:
            assert cfg.proxy is not None and cfg.proxy_stage1 is not None
            assert cfg.proxy_stage1.steps == budget.proxy_steps
        if budget.stage1_steps:
            assert cfg.stage1.steps == budget.stage1_steps
        assert (cfg.proxy is not None) is arm.proxy

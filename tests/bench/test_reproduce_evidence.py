"""Compute matching, the verdict rule, the lead carried and the CKA correlation on synthetic numbers (no training)."""

from __future__ import annotations

import math

import pytest

from bench.reproduce_budget import arm_budget, estimate_seconds, matched_images
from bench.reproduce_config import ARMS, GPU, PRESETS, SizePreset
from bench.reproduce_evidence import (
    NOT_REPRODUCED,
    NOT_SEPARABLE,
    REPRODUCED,
    CkaPoint,
    ablation_verdicts,
    lead_carried,
    pearson,
    pearson_by_domain,
    verdict,
)

BY_NAME = {a.name: a for a in ARMS}
REFERENCES = {"teacher", "none_frozen"}


@pytest.mark.parametrize("preset", PRESETS.values(), ids=lambda p: f"{p.name}-size")
def test_every_trained_arm_sees_full_gkds_images(preset: SizePreset) -> None:
    for budget in {preset.stage1_budget, *preset.sweep}:
        total = matched_images(preset, budget)
        for arm in ARMS:
            b = arm_budget(arm, preset, budget)
            if arm.name in REFERENCES:
                assert (b.stage2_steps, b.depends_on_budget) == (preset.stage2_steps, False)
                continue
            # Single-stage arms round up to whole steps, so they may see up to one batch more.
            assert total <= b.images < total + preset.stage2_batch, (arm.name, budget)
            assert b.depends_on_budget


def test_stage1_steps_follow_the_steps_each_arm_has() -> None:
    preset, budget = PRESETS["default"], 300
    steps = {
        name: (
            arm_budget(BY_NAME[name], preset, budget).proxy_steps,
            arm_budget(BY_NAME[name], preset, budget).stage1_steps,
        )
        for name in ("gkd", "two_stage_mse", "gkd_no_mask", "proteus", "gkd_no_proxy", "kd")
    }
    assert steps == {
        "gkd": (300, 300),
        "two_stage_mse": (300, 300),
        "gkd_no_mask": (300, 300),
        "proteus": (600, 0),  # the proxy step is its whole stage 1
        "gkd_no_proxy": (0, 600),
        "kd": (0, 0),
    }
    kd = arm_budget(BY_NAME["kd"], preset, budget)
    assert kd.stage2_steps == (2 * 300 * 16 + 100 * 8) // 8  # 1,300 steps at batch 8 = 10,400 images
    with pytest.raises(ValueError, match="at least 1"):
        arm_budget(BY_NAME["gkd"], preset, 0)


def test_the_gpu_preset_is_estimated_under_eight_minutes() -> None:
    estimate = estimate_seconds(GPU, list(ARMS), [GPU.stage1_budget], GPU.seeds, device="cuda")
    assert estimate["seconds"] < 8 * 60
    assert "TFLOP/s" in estimate["basis"]
    # The sweep costs far more: the estimate grows with the budgets.
    sweep = estimate_seconds(GPU, list(ARMS), list(GPU.sweep), GPU.seeds, device="cuda")
    assert sweep["seconds"] > 5 * estimate["seconds"]


def test_the_default_cpu_sweep_estimate_is_near_the_measured_run() -> None:
    """The sweep of docs/RESULTS.md took about 97 process-minutes (51 min in two processes)."""
    default = PRESETS["default"]
    hours = estimate_seconds(default, list(ARMS), list(default.sweep), default.seeds, device="cpu")["seconds"] / 3600
    assert 97 / 60 / 1.5 < hours < 97 / 60 * 1.5


@pytest.mark.parametrize(
    ("better", "worse", "expected"),
    [
        ([0.30, 0.31, 0.29], [0.20, 0.21, 0.19], REPRODUCED),  # +10 points, SE about 0.8
        ([0.20, 0.21, 0.19], [0.30, 0.31, 0.29], NOT_REPRODUCED),
        ([0.22, 0.18, 0.26], [0.20, 0.24, 0.16], NOT_SEPARABLE),  # +2 points, SE about 3.3
        ([0.30], [0.20], NOT_SEPARABLE),  # one seed each: no spread to judge by
    ],
)
def test_verdict_rule(better: list[float], worse: list[float], expected: str) -> None:
    result = verdict(better, worse)
    assert result["verdict"] == expected
    assert result["diff"] == pytest.approx(sum(better) / len(better) - sum(worse) / len(worse))


def test_verdict_standard_error_is_the_pooled_one() -> None:
    result = verdict([1.0, 3.0], [0.0, 2.0, 4.0])
    pooled_sd = math.sqrt((2.0 + 8.0) / 3)  # sums of squares 2 and 8 over 2 + 3 - 2 degrees of freedom
    assert result["se"] == pytest.approx(pooled_sd * math.sqrt(1 / 2 + 1 / 3))
    assert result["verdict"] == NOT_SEPARABLE


def _arm(per_seed: list[float]) -> dict[str, dict[str, dict[str, float]]]:
    return {"seeds": {str(i): {"a": v, "b": v} for i, v in enumerate(per_seed)}}


def test_lead_carried_and_verdicts_read_the_runs() -> None:
    arms = {
        "teacher": _arm([0.40, 0.40]),
        "none_frozen": _arm([0.20, 0.30]),
        "gkd": _arm([0.30, 0.35]),
        "gkd_no_proxy": _arm([0.25, 0.30]),
    }
    lead = lead_carried(arms, ["a", "b"])
    assert set(lead) == {"gkd", "gkd_no_proxy"}
    assert lead["gkd"]["mean"] == pytest.approx((0.5 + 0.5) / 2)
    assert lead["gkd_no_proxy"]["mean"] == pytest.approx((0.25 + 0.0) / 2)
    assert lead_carried({"gkd": arms["gkd"]}, ["a"]) == {}  # no teacher/no-KD rows: nothing to carry
    verdicts = ablation_verdicts({100: arms}, ["a", "b"])
    assert [(v["ablation"], v["budget"]) for v in verdicts] == [("step 1a", 100)]


def test_pearson_over_points_and_within_domains() -> None:
    points = [CkaPoint("gkd", 1, "0", d, c, m) for d, c, m in [("a", 0.1, 0.1), ("a", 0.2, 0.2), ("a", 0.3, 0.3)]]
    points += [CkaPoint("gkd", 1, "0", "b", c, 0.5 - c) for c in (0.1, 0.2, 0.3)]
    assert pearson(points[:3]) == pytest.approx(1.0)
    assert pearson_by_domain(points) == {"a": pytest.approx(1.0), "b": pytest.approx(-1.0)}
    assert pearson(points[:2]) is None  # fewer than three points

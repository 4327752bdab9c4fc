"""The service mode's job bodies are valid JobSpecs that say what the direct run does, arm by arm."""

from __future__ import annotations

import pytest

import gkd_catalog
from bench.reproduce_budget import arm_budget
from bench.reproduce_config import ARMS, QUICK, Arm
from bench.reproduce_service import arm_spec, compare_with_direct
from service.schemas import JobSpec


@pytest.mark.parametrize("arm", ARMS, ids=lambda a: a.name)
def test_every_arm_is_a_valid_job_spec(arm: Arm) -> None:
    body = arm_spec(
        arm,
        preset=QUICK,
        stage1_budget=40,
        seed=2,
        teacher_weights="artifact://0f8fad5b-d9cb-469f-a165-70867728950e/student.safetensors",
        student_weights="file:///data/init.safetensors",
        source="toon",
        targets=["clear", "night"],
        pool="pool",
        with_teacher_ref=arm.run_key == "none_frozen",
    )
    spec = JobSpec.model_validate(body)
    assert spec.method == arm.method
    assert spec.stage2.finetune is arm.finetune
    assert (spec.proxy is not None) is arm.proxy
    budget = arm_budget(arm, QUICK, 40)  # the direct run's compute-matched steps
    assert spec.stage2.steps == budget.stage2_steps and spec.seed == 2
    if "stage1" in gkd_catalog.method(arm.method).stages:
        assert spec.stage1.loss_weights["mask"] == arm.mask_weight
        assert spec.stage1.steps == max(budget.proxy_steps, budget.stage1_steps, 1)
    else:
        assert "stage1" not in body, "a single-stage arm sends no stage1 block (the API would refuse it)"
    assert [t.dataset for t in spec.targets] == ["repro-clear", "repro-night", "repro-toon"]


def test_compare_with_direct_reports_the_largest_difference() -> None:
    direct = {"gkd": {"seeds": {"0": {"clear": 0.5, "toon": 0.9}}}}
    api = {"gkd": {"seeds": {"0": {"clear": 0.45, "toon": 0.9}}}, "kd": {"seeds": {"0": {"clear": 0.1}}}}
    diff = compare_with_direct(direct, api)
    assert diff["gkd"] == pytest.approx(0.05)
    assert diff["kd"] is None

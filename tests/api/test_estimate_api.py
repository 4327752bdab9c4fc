"""POST /v1/jobs:estimate: the plan priced from the cost table, validated like a submit, nothing stored."""

from __future__ import annotations

import math

import pytest

from gkd_catalog.costs import head_cost, model_cost
from tests.api.conftest import ApiEnv, TeamClient
from tests.service.factories import spec_dict

ESTIMATE = "/v1/jobs:estimate"


def test_estimate_prices_every_stage_and_stores_nothing(api: ApiEnv, ready_team: TeamClient) -> None:
    queued_before = list(api.enqueuer.jobs)
    spec = spec_dict(
        stage1={"epochs": 2, "batch_size": 2, "image_size": 32},
        stage2={"steps": 7, "batch_size": 2, "crop_size": 32, "head": "fpn"},
        references=["student_frozen"],
    )
    response = ready_team.post(ESTIMATE, json=spec)
    assert response.status_code == 200, response.text
    body = response.json()
    plan_stages = [p["stage"] for p in body["phases"]]
    assert plan_stages == ["stage1b", "stage2", "ref_student_frozen"]
    images = ready_team.get("/v1/datasets/src").json()["report"]["splits"]["train"]["images"]
    one_b, stage2, ref = body["phases"]
    assert one_b["images"] == images and one_b["steps"] == math.ceil(2 * images / 2)
    for phase in body["phases"]:
        assert phase["unknown"] is None, phase
        assert phase["flops_per_step"] > 0 and phase["total_flops"] == pytest.approx(
            phase["flops_per_step"] * phase["steps"]
        )
        assert 0 < phase["peak_memory_gib"] < 1
    # Stage 2 of gkd: the frozen student's forward once, the fpn head's forward and backward (x3), per image.
    student, head = model_cost("test_vit"), head_cost("fpn", "test_vit")
    per_image = student.forward_flops(32) + 3 * head.forward_flops(32, 2, 128)  # src has 2 classes
    assert stage2["flops_per_step"] == pytest.approx(2 * per_image) and stage2["steps"] == 7
    assert ref["flops_per_step"] == pytest.approx(stage2["flops_per_step"])  # student_frozen: the same step
    assert body["total_flops"] == pytest.approx(sum(p["total_flops"] for p in body["phases"]))
    # The committed throughput table is empty until a GPU check ran: no kind, said so, never guessed.
    assert body["gpu_hours"] == [] and any("No GPU kind" in note for note in body["notes"])
    asked = ready_team.post(ESTIMATE, params={"gpu_kind": "NVIDIA H100 80GB HBM3"}, json=spec).json()
    (h100,) = asked["gpu_hours"]
    assert h100["hours"] is None and "no throughput measurement" in h100["reason"]
    assert all(p["gpu_hours"][0]["hours"] is None for p in asked["phases"])

    assert api.enqueuer.jobs == queued_before
    assert ready_team.get("/v1/jobs").json()["items"] == []


def test_what_the_table_cannot_price_is_unknown_with_the_reason(ready_team: TeamClient) -> None:
    spec = spec_dict(student={"model": "test_vit", "weights": "none", "overrides": {"depth": 1}})
    body = ready_team.post(ESTIMATE, json=spec).json()
    assert all(p["flops_per_step"] is None and "overrides" in p["unknown"] for p in body["phases"])
    assert body["total_flops"] is None and body["phases"][0]["steps"] == 2  # the plan itself is still there
    queries = spec_dict(method="none", stage2={"head": "mask2former", "head_queries": 10, "crop_size": 32})
    phase = ready_team.post(ESTIMATE, json=queries).json()["phases"][0]
    assert phase["flops_per_step"] is None and "head_queries" in phase["unknown"]


def test_the_same_422_as_a_submit(ready_team: TeamClient) -> None:
    for bad in (
        spec_dict(source={"dataset": "nope", "split": "train"}),
        spec_dict(stage1={"steps": 2, "epochs": 1}),
        spec_dict(teacher={"model": "no_such_model_x"}),
    ):
        estimated, submitted = ready_team.post(ESTIMATE, json=bad), ready_team.post("/v1/jobs", json=bad)
        assert estimated.status_code == submitted.status_code == 422
        assert estimated.json()["errors"] == submitted.json()["errors"]


def test_auth_and_team_isolation(api: ApiEnv, ready_team: TeamClient, other_team: TeamClient) -> None:
    assert api.client.post(ESTIMATE, json=spec_dict()).status_code == 401
    foreign = other_team.post(ESTIMATE, json=spec_dict())  # src/tgt are ready_team's, unseen by other_team
    assert foreign.status_code == 422
    assert {e["field"] for e in foreign.json()["errors"]} >= {"source.dataset", "targets[0].dataset"}


def test_openapi_documents_the_estimate(api: ApiEnv) -> None:
    operation = api.client.get("/openapi.json").json()["paths"][ESTIMATE]["post"]
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("JobEstimate")
    assert {"401", "422"} <= set(operation["responses"])

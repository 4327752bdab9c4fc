"""GET /v1/jobs/{id} carries the training plan: epochs turned into steps over the registered sets."""

from __future__ import annotations

import math

from tests.api.conftest import TeamClient
from tests.service.factories import spec_dict


def test_plan_turns_epochs_into_steps_per_stage(ready_team: TeamClient) -> None:
    ready_team.register("px")
    spec = spec_dict(
        proxy={"dataset": "px", "split": "train"},
        stage1={"epochs": 3, "batch_size": 2, "image_size": 32, "proxy_step": {"steps": 5, "batch_size": 4}},
        references=["teacher", "student_frozen"],
    )
    job = ready_team.post("/v1/jobs", json=spec).json()
    plan = ready_team.get(f"/v1/jobs/{job['id']}").json()["plan"]
    report = ready_team.get("/v1/datasets/src").json()["report"]["splits"]["train"]
    assert [row["stage"] for row in plan] == ["stage1a", "stage1b", "ref_teacher", "stage2", "ref_student_frozen"]
    one_a, one_b, _, stage2, _ = plan
    assert (one_a["steps"], one_a["batch_size"], one_a["epochs"]) == (5, 4, None)
    assert one_b["images"] == report["images"] and one_b["epochs"] == 3
    assert one_b["steps"] == math.ceil(3 * report["images"] / 2)
    assert stage2["images"] == report["pairs"] and stage2["steps"] == 2
    # Listings stay light: no plan there.
    assert ready_team.get("/v1/jobs").json()["items"][0]["plan"] is None

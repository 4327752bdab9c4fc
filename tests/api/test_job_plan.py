"""GET /v1/jobs/{id} carries the training plan: epochs turned into steps over the registered sets."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import event

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


def test_reading_a_job_costs_a_fixed_number_of_queries(ready_team: TeamClient) -> None:
    """The hot read path: the key with its team, the job, and every dataset the plan needs in one query."""
    ready_team.register("px")
    ready_team.register("more")
    spec = spec_dict(
        proxy={"dataset": "px", "split": "train"},
        stage1={
            "epochs": 1,
            "batch_size": 2,
            "image_size": 32,
            "extra_images": [{"dataset": "more", "split": "train"}],
        },
        references=["teacher", "student_frozen"],
    )
    job = ready_team.post("/v1/jobs", json=spec).json()
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = ready_team.env.app.state.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        body = ready_team.get(f"/v1/jobs/{job['id']}").json()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert [row["images"] for row in body["plan"][:2]] == [
        ready_team.get("/v1/datasets/px").json()["report"]["splits"]["train"]["images"],
        sum(ready_team.get(f"/v1/datasets/{n}").json()["report"]["splits"]["train"]["images"] for n in ("src", "more")),
    ]
    selects = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3, selects
    assert sum("FROM datasets" in s for s in selects) == 1

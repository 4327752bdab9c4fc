"""DELETE /v1/datasets/{name}: the registration goes (the files stay), never from under a job or evaluation
that has not ended, never another team's; a worker then stops a job naming it with a clear cause."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from gkd_core.errors import DatasetError
from service import evaluations
from service import jobs as job_service
from service.db import session_scope
from service.models import Team
from tests.api.conftest import ApiEnv, TeamClient
from tests.service.factories import spec_dict
from worker.pipeline import usable_dataset


def test_a_dataset_is_deleted_once_and_only_by_its_team(
    api: ApiEnv, ready_team: TeamClient, other_team: TeamClient
) -> None:
    other_team.register("tgt")
    uri = ready_team.get("/v1/datasets/tgt").json()["uri"]
    assert other_team.client_delete("/v1/datasets/src").status_code == 404  # not theirs: no hint it exists
    assert ready_team.get("/v1/datasets/src").status_code == 200

    assert ready_team.client_delete("/v1/datasets/tgt").status_code == 204
    assert ready_team.get("/v1/datasets/tgt").status_code == 404
    assert [d["name"] for d in ready_team.get("/v1/datasets").json()["items"]] == ["src"]
    assert other_team.get("/v1/datasets/tgt").json()["status"] == "valid"  # theirs is untouched
    assert (api.settings.data_dir / "ds" / f"{ready_team.name}-tgt").is_dir(), "the files are never touched"
    gone = ready_team.client_delete("/v1/datasets/tgt")
    assert gone.status_code == 404 and "no dataset 'tgt'" in gone.json()["detail"]

    refused = ready_team.post("/v1/jobs", json=spec_dict())
    assert refused.status_code == 422 and "'tgt' is not registered" in refused.text
    again = ready_team.post("/v1/datasets", json={"name": "tgt", "layout": "folder", "uri": uri})
    assert again.status_code == 201  # registering it again is a new registration
    assert ready_team.post("/v1/jobs", json=spec_dict()).status_code == 201


@pytest.mark.parametrize("field", ["source", "targets", "proxy"])
def test_a_dataset_a_job_still_reads_is_kept_until_the_job_ends(
    api: ApiEnv, ready_team: TeamClient, field: str
) -> None:
    ready_team.register("extra")
    ref = {"dataset": "extra", "split": "train"}
    changes = {"targets": [{"dataset": "tgt", "split": "val"}, ref]} if field == "targets" else {field: ref}
    submitted = ready_team.post("/v1/jobs", json=spec_dict(**changes))
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    refused = ready_team.client_delete("/v1/datasets/extra")
    assert refused.status_code == 409 and f"job {job_id}" in refused.json()["detail"]
    assert "cancel it or wait" in refused.json()["detail"]
    assert ready_team.get("/v1/datasets/extra").status_code == 200
    assert ready_team.post(f"/v1/jobs/{job_id}/cancel").status_code == 202
    assert ready_team.client_delete("/v1/datasets/extra").status_code == 204


def test_a_dataset_an_evaluation_still_reads_is_kept_until_it_ends(api: ApiEnv, ready_team: TeamClient) -> None:
    ready_team.register("night")
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
        job_service.finish(session=session, job_id=job_id, status="succeeded")
    assert ready_team.client_delete("/v1/datasets/src").status_code == 204  # the job has ended
    body = {"targets": [{"dataset": "night", "split": "train"}]}
    evaluation_id = ready_team.post(f"/v1/jobs/{job_id}/evaluations", json=body).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        assert evaluations.claim_evaluation(session=session, evaluation_id=evaluation_id, worker="w@h") is not None
    refused = ready_team.client_delete("/v1/datasets/night")
    assert refused.status_code == 409 and f"evaluation {evaluation_id}" in refused.json()["detail"]
    assert ready_team.post(f"/v1/evaluations/{evaluation_id}/cancel").status_code == 202  # cancelling: not ended
    assert ready_team.client_delete("/v1/datasets/night").status_code == 409


def test_a_worker_stops_a_job_whose_dataset_was_deleted_with_the_cause(api: ApiEnv, team: TeamClient) -> None:
    team.register("gone")
    assert team.client_delete("/v1/datasets/gone").status_code == 204
    with session_scope(api.app.state.session_factory) as session:
        team_id = session.scalar(select(Team.id).where(Team.name == team.name))
        assert team_id is not None
        with pytest.raises(DatasetError, match="'gone' was deleted after this was submitted"):
            usable_dataset(session, team_id, "gone")

"""DELETE /v1/jobs/{id}: a finished job's stored objects go, the job reads as missing, twice is harmless."""

from __future__ import annotations

from service import jobs as job_service
from service.db import session_scope
from service.storage import get_store
from tests.api.conftest import ApiEnv, TeamClient
from tests.service.factories import spec_dict


def test_delete_removes_artifacts_and_checkpoints_and_hides_the_job(
    api: ApiEnv, ready_team: TeamClient, other_team: TeamClient
) -> None:
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    store = get_store(api.settings)
    keys = [f"jobs/{job_id}/artifacts/student.safetensors", f"jobs/{job_id}/checkpoints/stage1/last.pt"]
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
        for key in keys:
            stored = store.put_bytes(key, b"weights")
        job_service.add_artifact(
            session=session, job_id=job_id, name="student.safetensors", kind="student",
            size=stored.size, sha256=stored.sha256, storage_key=keys[0],
        )
        job_service.record_metrics(
            session=session, job_id=job_id, rows=[{"stage": "stage2", "step": 1, "name": "loss", "value": 1.0}]
        )
    refused = ready_team.client_delete(f"/v1/jobs/{job_id}")
    assert refused.status_code == 409 and "cancel it first" in refused.json()["detail"]
    assert all(store.exists(key) for key in keys)

    with session_scope(api.app.state.session_factory) as session:
        job_service.finish(session=session, job_id=job_id, status="succeeded")
    assert other_team.client_delete(f"/v1/jobs/{job_id}").status_code == 404
    assert ready_team.client_delete(f"/v1/jobs/{job_id}").status_code == 204
    assert not any(store.exists(key) for key in keys) and store.list(f"jobs/{job_id}/") == []
    for path in ("", "/events", "/artifacts", "/artifacts/student.safetensors"):
        assert ready_team.get(f"/v1/jobs/{job_id}{path}").status_code == 404, path
    assert job_id not in [j["id"] for j in ready_team.get("/v1/jobs").json()["items"]]
    assert ready_team.client_delete(f"/v1/jobs/{job_id}").status_code == 204  # idempotent
    with session_scope(api.app.state.session_factory) as session:
        assert job_service.list_metrics(session=session, job_id=job_id) == []  # its loss rows went too


def test_a_job_with_an_evaluation_under_way_is_kept_and_a_deleted_job_frees_its_key(
    api: ApiEnv, ready_team: TeamClient
) -> None:
    key = {"Idempotency-Key": "spec-sha256-same-file"}
    job_id = ready_team.post("/v1/jobs", json=spec_dict(), headers=key).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
        job_service.finish(session=session, job_id=job_id, status="succeeded")
    body = {"targets": [{"dataset": "tgt", "split": "train"}]}
    evaluation_id = ready_team.post(f"/v1/jobs/{job_id}/evaluations", json=body).json()["id"]
    refused = ready_team.client_delete(f"/v1/jobs/{job_id}")
    assert refused.status_code == 409 and evaluation_id in refused.json()["detail"]
    assert ready_team.post(f"/v1/evaluations/{evaluation_id}/cancel").status_code == 202  # queued: cancelled
    assert ready_team.client_delete(f"/v1/jobs/{job_id}").status_code == 204
    assert ready_team.get(f"/v1/evaluations/{evaluation_id}").status_code == 404  # gone with its job

    again = ready_team.post("/v1/jobs", json=spec_dict(), headers=key)
    assert again.status_code == 201 and again.headers.get("idempotent-replayed") is None
    assert again.json()["id"] != job_id, "the same spec after a deletion is a new job, not the deleted one"
    replay = ready_team.post("/v1/jobs", json=spec_dict(), headers=key)
    assert replay.json()["id"] == again.json()["id"] and replay.headers["idempotent-replayed"] == "true"


def test_artifact_weights_must_name_a_file_of_a_job_that_still_exists(api: ApiEnv, ready_team: TeamClient) -> None:
    job_id = ready_team.post("/v1/jobs", json=spec_dict()).json()["id"]
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
        job_service.add_artifact(
            session=session, job_id=job_id, name="student.safetensors", kind="student",
            size=1, sha256="0" * 64, storage_key=f"jobs/{job_id}/artifacts/student.safetensors",
        )  # fmt: skip
        job_service.finish(session=session, job_id=job_id, status="succeeded")

    def weights(name: str) -> dict[str, object]:
        return spec_dict(student={"model": "test_vit", "weights": f"artifact://{job_id}/{name}"})

    typo = ready_team.post("/v1/jobs", json=weights("student.safetensor"))
    assert typo.status_code == 422, typo.text
    error = next(e for e in typo.json()["errors"] if e["field"] == "student.weights")
    assert "has no artifact 'student.safetensor'" in error["message"] and "student.safetensors" in error["fix"]
    reader = ready_team.post("/v1/jobs", json=weights("student.safetensors"))
    assert reader.status_code == 201
    refused = ready_team.client_delete(f"/v1/jobs/{job_id}")  # the queued job would start from these weights
    assert refused.status_code == 409 and f"job {reader.json()['id']}" in refused.json()["detail"]
    assert ready_team.post(f"/v1/jobs/{reader.json()['id']}/cancel").status_code == 202
    assert ready_team.client_delete(f"/v1/jobs/{job_id}").status_code == 204
    gone = ready_team.post("/v1/jobs", json=weights("student.safetensors"))
    assert gone.status_code == 422 and f"no job {job_id} for this team" in gone.text

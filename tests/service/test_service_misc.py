"""Auth keys, page tokens, datasets, spec checks and evaluations in the service layer."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from service import auth, evaluations, jobs
from service.datasets import find_dataset, register_dataset
from service.errors import InvalidPageToken, InvalidTransition, Unauthorized, ValidationFailed
from service.models import ApiKey
from service.pagination import Cursor, decode_token, encode_token
from service.schemas import DataRef, DatasetCreate, JobSpec
from service.settings import Settings
from service.spec_checks import check_job_spec
from tests.service._db import write_folder_dataset
from tests.service.factories import make_job, make_team, spec_dict


def test_keys_are_hashed_and_authenticate(session: Session) -> None:
    key, row = auth.create_api_key(session=session, team_name="vision")
    assert key not in (row.key_hash, row.prefix) and row.key_hash == auth.hash_key(key)
    assert auth.authenticate(session=session, key=key).name == "vision"
    for bad in (None, "", "nonsense", key[:-1] + ("A" if key[-1] != "A" else "B")):
        with pytest.raises(Unauthorized):
            auth.authenticate(session=session, key=bad)
    auth.revoke_api_key(session=session, prefix=row.prefix)
    with pytest.raises(Unauthorized):
        auth.authenticate(session=session, key=key)
    assert session.get(ApiKey, row.id) is not None


def test_page_token_round_trip_and_tampering() -> None:
    cursor = Cursor(created_at=datetime(2026, 1, 2, tzinfo=UTC), id="abc")
    token = encode_token(cursor, filters={"status": ["queued"]}, secret="s" * 16)
    assert decode_token(token, filters={"status": ["queued"]}, secret="s" * 16) == cursor
    payload, _, sig = token.partition(".")
    for bad in (payload[:-1] + ("A" if payload[-1] != "A" else "B") + "." + sig, token + "x", "x", "", "a.b.c"):
        with pytest.raises(InvalidPageToken):
            decode_token(bad, filters={"status": ["queued"]}, secret="s" * 16)
    with pytest.raises(InvalidPageToken):  # same token, other filters
        decode_token(token, filters={"status": ["failed"]}, secret="s" * 16)
    with pytest.raises(InvalidPageToken):  # another deployment's secret
        decode_token(token, filters={"status": ["queued"]}, secret="t" * 16)


def test_list_jobs_filters_before_limit_and_orders_stably(session: Session) -> None:
    team = make_team(session)
    made = [make_job(session, team, method="kd" if i % 3 == 0 else "gkd") for i in range(7)]
    same_time = made[0].created_at
    for job in made:  # identical timestamps: order must fall back to id
        job.created_at = same_time
    session.flush()
    seen: list[str] = []
    cursor = None
    while True:
        page, cursor = jobs.list_jobs(session=session, team_id=team.id, method="gkd", page_size=2, after=cursor)
        seen += [j.id for j in page]
        if cursor is None:
            break
    expected = sorted((j.id for j in made if j.method == "gkd"), reverse=True)
    assert seen == expected


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def test_register_valid_and_invalid_datasets(session: Session, tmp_path: Path) -> None:
    team = make_team(session)
    good = write_folder_dataset(tmp_path / "good")
    bad = write_folder_dataset(tmp_path / "bad", bad_label=True)
    ds, created = register_dataset(
        session=session,
        team_id=team.id,
        settings=_settings(tmp_path),
        body=DatasetCreate(name="good", layout="folder", uri=good.as_uri()),
    )
    assert created and ds.status == "valid" and ds.report["splits"]["train"]["pairs"] == 2
    ds, _ = register_dataset(
        session=session,
        team_id=team.id,
        settings=_settings(tmp_path),
        body=DatasetCreate(name="bad", layout="folder", uri=bad.as_uri()),
    )
    assert ds.status == "invalid" and ds.report["problems"][0]["kind"] == "bad_label"
    with pytest.raises(ValidationFailed, match="outside the allowed roots"):
        register_dataset(
            session=session,
            team_id=team.id,
            settings=_settings(tmp_path / "good"),
            body=DatasetCreate(name="far", layout="folder", uri=bad.as_uri()),
        )
    assert find_dataset(session=session, team_id=team.id, name="far") is None
    again, created = register_dataset(
        session=session,
        team_id=team.id,
        settings=_settings(tmp_path),
        body=DatasetCreate(name="bad", layout="folder", uri=good.as_uri()),
    )
    assert not created and again.status == "valid"


def test_spec_checks_name_each_field(session: Session, tmp_path: Path) -> None:
    team = make_team(session)
    settings = _settings(tmp_path)
    root = write_folder_dataset(tmp_path / "src")
    register_dataset(
        session=session,
        team_id=team.id,
        settings=settings,
        body=DatasetCreate(name="src", layout="folder", uri=root.as_uri()),
    )
    bad_root = write_folder_dataset(tmp_path / "tgt", bad_label=True)
    register_dataset(
        session=session,
        team_id=team.id,
        settings=settings,
        body=DatasetCreate(name="tgt", layout="folder", uri=bad_root.as_uri()),
    )
    spec = JobSpec.model_validate(
        spec_dict(
            teacher={"model": "vit_base_patch14_dinov3x"},
            student={"model": "test_vit"},
            targets=[{"dataset": "tgt", "split": "val"}, {"dataset": "nowhere", "split": "val"}],
            stage1={"image_size": 40},
            resources={"queue": "tpu"},
        )
    )
    with pytest.raises(ValidationFailed) as info:
        check_job_spec(session=session, team_id=team.id, spec=spec, settings=settings)
    by_field = {e["field"]: e for e in info.value.errors}
    assert "vit_base_patch14_dinov2" in by_field["teacher.model"]["close_matches"]
    assert by_field["targets[0].dataset"]["report"]["problems"][0]["kind"] == "bad_label"
    assert "not registered" in by_field["targets[1].dataset"]["message"]
    assert by_field["stage1.image_size"]["fix"] == "use 32 or 48"
    assert "resources.queue" in by_field
    pair = JobSpec.model_validate(
        spec_dict(teacher={"model": "test_resnet"}, targets=[{"dataset": "src", "split": "val"}])
    )
    with pytest.raises(ValidationFailed) as info:
        check_job_spec(session=session, team_id=team.id, spec=pair, settings=settings)
    assert [e["field"] for e in info.value.errors] == ["teacher.model"]
    assert "cannot be matched" in info.value.errors[0]["message"]
    ok = JobSpec.model_validate(spec_dict(targets=[{"dataset": "src", "split": "val"}]))
    check_job_spec(session=session, team_id=team.id, spec=ok, settings=settings)
    kd = JobSpec.model_validate(
        spec_dict(method="kd", teacher={"model": "test_resnet"}, targets=[{"dataset": "src", "split": "val"}])
    )
    check_job_spec(session=session, team_id=team.id, spec=kd, settings=settings)


def test_evaluation_lifecycle(session: Session) -> None:
    job = make_job(session, status="running")
    with pytest.raises(InvalidTransition):
        evaluations.create_evaluation(session=session, job=job, targets=[DataRef(dataset="x", split="val")])
    job.status = "succeeded"
    session.flush()
    ev = evaluations.create_evaluation(session=session, job=job, targets=[DataRef(dataset="x", split="val")])
    assert ev.status == "queued"
    claimed = evaluations.claim_evaluation(session=session, evaluation_id=ev.id)
    assert claimed is not None and claimed.status == "running"
    assert evaluations.claim_evaluation(session=session, evaluation_id=ev.id) is None
    done = evaluations.finish_evaluation(
        session=session, evaluation_id=ev.id, status="succeeded", results={"x": {"miou": 0.4}}
    )
    assert done.results == {"x": {"miou": 0.4}} and done.finished_at is not None
    with pytest.raises(InvalidTransition):
        evaluations.finish_evaluation(session=session, evaluation_id=ev.id, status="failed", error="late")


def test_production_refuses_the_dev_secret() -> None:
    with pytest.raises(ValueError, match="GKD_SECRET_KEY"):
        Settings(mode="production")
    assert Settings(mode="production", secret_key="x" * 32).secret_key == "x" * 32

"""Licence lineage: the zoo's weight licences on GET /v1/models, the first event, warnings, JobRead.lineage."""

from __future__ import annotations

from typing import Any

import pytest

from service import jobs as job_service
from service.db import session_scope
from service.zoo import CURATED, job_lineage, weights_lineage
from tests.api.conftest import ApiEnv, TeamClient
from tests.service.factories import spec_dict

DINOV2 = {"model": "vit_small_patch14_dinov2", "weights": "timm"}
DINOV3 = {"model": "vit_small_patch16_dinov3", "weights": "timm"}
DEIT = {"model": "deit_tiny_patch16_224", "weights": "timm"}


def _submit(team: TeamClient, **changes: Any) -> dict[str, Any]:
    response = team.post("/v1/jobs", json=spec_dict(**changes))
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def _events(team: TeamClient, job_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = team.get(f"/v1/jobs/{job_id}/events").json()["items"]
    return events


def _succeed(api: ApiEnv, job_id: str) -> None:
    with session_scope(api.app.state.session_factory) as session:
        job_service.claim_job(session=session, job_id=job_id)
        job_service.add_artifact(
            session=session, job_id=job_id, name="student.safetensors", kind="student", size=1, sha256="0" * 64,
            storage_key=f"jobs/{job_id}/student.safetensors",
        )
        job_service.finish(session=session, job_id=job_id, status="succeeded")


def test_models_show_each_weights_licence_and_its_source(team: TeamClient) -> None:
    items = {m["name"]: m for m in team.get("/v1/models").json()["items"]}
    assert set(items) == {m.name for m in CURATED}
    assert all(m["weights"]["licence"] and m["weights"]["url"].startswith("https://") for m in items.values())
    dinov2 = items["vit_base_patch14_dinov2"]["weights"]
    assert (dinov2["licence"], dinov2["commercial"], dinov2["tag"]) == ("Apache-2.0", "yes", "lvd142m")
    assert "2023-08-31" in dinov2["note"]
    dinov3 = items["vit_large_patch16_dinov3"]["weights"]
    assert dinov3["licence"] == "DINOv3 License" and dinov3["commercial"] == "restricted"
    assert dinov3["url"] == "https://ai.meta.com/resources/models-and-libraries/dinov3-license/"
    assert items["eva02_base_patch14_224"]["weights"]["licence"] == "MIT"
    deit = items["deit_small_patch16_224"]["weights"]
    assert deit["licence"] == "Apache-2.0" and "ImageNet" in deit["note"]
    assert all("ImageNet" in items[name]["weights"]["note"] for name in ("resnet50", "convnext_tiny"))


def test_zoo_licences_agree_with_timms_pretrained_configs() -> None:
    """Each record is about timm's default tag, and its licence is the one timm's config names."""
    import gkd_core  # noqa: F401  (installs the torchvision shim before timm)

    # isort: split
    from timm.models import get_pretrained_cfg

    spdx = {"Apache-2.0": "apache-2.0", "MIT": "mit", "DINOv3 License": "dinov3-license"}
    for meta in CURATED:
        assert meta.weights is not None, meta.name
        cfg = get_pretrained_cfg(meta.name)
        assert cfg is not None and cfg.tag == meta.weights.tag, meta.name
        assert cfg.license == spdx[meta.weights.licence], meta.name


def test_a_permissive_teacher_names_the_lineage_in_the_first_event(team: TeamClient) -> None:
    team.register("src")
    team.register("tgt")
    job = _submit(team, teacher=DINOV2, student=DEIT)
    lineage = job["lineage"]
    assert lineage["teacher"]["licence"] == "Apache-2.0" and lineage["teacher"]["commercial"] == "yes"
    assert lineage["student"]["licence"] == "Apache-2.0" and lineage["student"]["tag"] == "fb_in1k"
    assert lineage["source"] == "src:train" and lineage["proxy"] is None and lineage["warnings"] == []
    events = _events(team, job["id"])
    assert [e["type"] for e in events] == ["created"]
    message = events[0]["message"]
    assert message.startswith(
        "job queued; lineage: teacher vit_small_patch14_dinov2 (timm weights lvd142m): Apache-2.0"
    )
    assert "https://github.com/facebookresearch/dinov2/blob/main/LICENSE" in message
    assert "student deit_tiny_patch16_224 (timm weights fb_in1k): Apache-2.0" in message
    assert message.endswith("training sets: source src:train, proxy none, extra images none")

    read = team.get(f"/v1/jobs/{job['id']}").json()
    assert read["lineage"] == lineage
    listed = team.get("/v1/jobs").json()["items"]
    assert all(item["lineage"] is None for item in listed)  # listings stay light


def test_restricted_or_unknown_teacher_licences_add_a_warning_event(team: TeamClient, api: ApiEnv) -> None:
    team.register("src")
    team.register("tgt")
    team.register("pool")
    restricted = _submit(
        team, teacher=DINOV3, student={"model": "test_vit", "weights": "none"}, method="proteus",
        proxy={"dataset": "pool", "split": "train"},
    )
    events = _events(team, restricted["id"])
    assert [e["type"] for e in events] == ["created", "warning"]
    assert "DINOv3 License allows commercial use only under its own restrictions" in events[1]["message"]
    assert "https://ai.meta.com/resources/models-and-libraries/dinov3-license/" in events[1]["message"]
    assert "no pretrained weights" in events[0]["message"] and "proxy pool:train" in events[0]["message"]
    assert restricted["lineage"]["warnings"] == [events[1]["message"]]

    weights = api.settings.data_dir / "weights" / "teacher.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(b"x")
    unknown = _submit(team, teacher={"model": "test_vit", "weights": weights.as_uri()})
    events = _events(team, unknown["id"])
    assert [e["type"] for e in events] == ["created", "warning"]
    assert "is unknown to the service" in events[1]["message"]
    assert unknown["lineage"]["teacher"]["commercial"] == "unknown"

    no_weights = _submit(team)  # random initialisation: nothing inherited, nothing to warn about
    assert [e["type"] for e in _events(team, no_weights["id"])] == ["created"]
    assert no_weights["lineage"]["teacher"]["commercial"] == "n/a"


def test_weights_from_another_job_are_traced_to_that_jobs_teacher(team: TeamClient, api: ApiEnv) -> None:
    team.register("src")
    team.register("tgt")
    scratch = _submit(team)  # a teacher trained from scratch (the demo's first job)
    _succeed(api, scratch["id"])
    derived = _submit(team, teacher={"model": "test_vit", "weights": f"artifact://{scratch['id']}/student.safetensors"})
    teacher = derived["lineage"]["teacher"]
    assert teacher["source"] == "job" and teacher["derived_from_job"] == scratch["id"]
    assert teacher["commercial"] == "n/a" and derived["lineage"]["warnings"] == []
    assert "src:train" in teacher["training_data"]
    assert [e["type"] for e in _events(team, derived["id"])] == ["created"]

    from_dinov3 = _submit(team, teacher=DINOV3, method="kd")
    _succeed(api, from_dinov3["id"])
    grandchild = _submit(
        team, teacher={"model": "test_vit", "weights": f"artifact://{from_dinov3['id']}/student.safetensors"}
    )
    assert grandchild["lineage"]["teacher"]["commercial"] == "restricted"
    assert grandchild["lineage"]["teacher"]["licence"] == "DINOv3 License"
    assert [e["type"] for e in _events(team, grandchild["id"])] == ["created", "warning"]


@pytest.mark.parametrize(
    ("model", "weights", "commercial"),
    [
        ("vit_small_patch14_dinov2", "timm", "yes"),
        ("vit_small_patch14_dinov2.lvd142m", "timm", "yes"),
        ("vit_large_patch16_dinov3.sat493m", "timm", "unknown"),  # a tag the record is not about
        ("vit_huge_plus_patch16_dinov3", "timm", "unknown"),  # outside the curated zoo
        ("test_vit", "s3://bucket/teacher.safetensors", "unknown"),
        ("test_vit", "none", "n/a"),
        ("test_vit", "artifact://00000000-0000-0000-0000-000000000000/student.safetensors", "unknown"),
    ],
)
def test_weights_lineage_marks_what_is_not_known(model: str, weights: str, commercial: str) -> None:
    assert weights_lineage("teacher", model, weights).commercial == commercial


def test_extra_images_and_old_rows() -> None:
    spec = spec_dict(stage1={"extra_images": [{"dataset": "mine", "split": "all"}]})
    assert job_lineage(spec).extra_images == ["mine:all"]
    assert job_lineage({}).teacher.commercial == "n/a"  # a malformed or old row never breaks a read

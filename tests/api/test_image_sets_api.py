"""Images-only sets through the API: fine as the proxy or extra stage-1 images, refused where labels are read."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import TeamClient
from tests.gkd_core.data.fixtures import imagenet
from tests.service.factories import spec_dict


def _register_imagenet(team: TeamClient, name: str) -> Any:
    root = imagenet(team.env.settings.data_dir / "ds" / f"{team.name}-{name}")
    response = team.post("/v1/datasets", json={"name": name, "layout": "imagenet", "uri": root.as_uri()})
    assert response.status_code == 201, response.text
    return response.json()


def test_an_images_only_set_registers_with_an_image_report(ready_team: TeamClient) -> None:
    body = _register_imagenet(ready_team, "inet")
    assert body["status"] == "valid" and body["report"]["labels"] is False
    assert body["report"]["splits"]["train"]["images"] > 0


def test_images_only_sets_serve_stage_1_but_not_labelled_roles(ready_team: TeamClient) -> None:
    _register_imagenet(ready_team, "inet")
    proxy = ready_team.post("/v1/jobs", json=spec_dict(proxy={"dataset": "inet", "split": "train"}))
    assert proxy.status_code == 201, proxy.text
    extra = spec_dict(stage1={"steps": 2, "batch_size": 2, "image_size": 32,
                              "extra_images": [{"dataset": "inet", "split": "train"}]})
    assert ready_team.post("/v1/jobs", json=extra).status_code == 201

    as_source = ready_team.post("/v1/jobs", json=spec_dict(source={"dataset": "inet", "split": "train"}))
    assert as_source.status_code == 422
    errors = {e["field"]: e for e in as_source.json()["errors"]}
    assert "images-only" in errors["source.dataset"]["message"] and "proxy" in errors["source.dataset"]["fix"]
    as_target = ready_team.post("/v1/jobs", json=spec_dict(targets=[{"dataset": "inet", "split": "train"}]))
    assert as_target.status_code == 422 and "targets[0].dataset" in as_target.text


def test_extra_images_need_a_source_step(ready_team: TeamClient) -> None:
    _register_imagenet(ready_team, "inet")
    spec = spec_dict(method="kd", stage1={"extra_images": [{"dataset": "inet", "split": "train"}]})
    response = ready_team.post("/v1/jobs", json=spec)
    assert response.status_code == 422 and "no source step" in response.text

"""Layout options at registration: checked against the catalogue, stored, shown, used by the validator and jobs."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import select

from service.models import Team
from service.schemas import DataRef
from tests.api.conftest import ApiEnv, TeamClient, write_folder_dataset
from tests.service.factories import spec_dict
from worker.context import WorkerContext
from worker.pipeline import resolve_split


def _mmseg_without_classes_json(root: Path) -> Path:
    """The folder fixture as mmseg img_dir/ann_dir with no classes.json: classes must come from options."""
    folder = write_folder_dataset(root.with_name(root.name + "-src"))
    for split in ("train", "val"):
        shutil.copytree(folder / "images" / split, root / "img_dir" / split)
        shutil.copytree(folder / "masks" / split, root / "ann_dir" / split)
    return root


def test_options_reach_the_validator_the_read_and_the_jobs(api: ApiEnv, team: TeamClient) -> None:
    root = _mmseg_without_classes_json(api.settings.data_dir / "ds" / f"{team.name}-potsdam")
    plain = team.post("/v1/datasets", json={"name": "pots", "layout": "mmseg", "uri": root.as_uri()})
    assert plain.status_code == 201 and plain.json()["status"] == "invalid"  # no classes.json, no option
    assert "classes" in plain.json()["report"]["problems"][0]["detail"]
    assert plain.json()["options"] == {}

    body = {"name": "pots", "layout": "mmseg", "uri": root.as_uri(), "options": {"classes": ["road", "sky"]}}
    again = team.post("/v1/datasets", json=body)
    assert again.status_code == 200, again.text
    assert again.json()["status"] == "valid" and again.json()["report"]["classes"]["names"] == ["road", "sky"]
    shown = team.get("/v1/datasets/pots").json()
    assert shown["options"] == {"classes": ["road", "sky"]}
    assert [d["options"] for d in team.get("/v1/datasets").json()["items"]] == [{"classes": ["road", "sky"]}]

    # A job names only the dataset and split: the worker reads the set with the options it was validated with.
    context = WorkerContext(api.settings)
    try:
        with context.session() as session:
            team_id = session.scalar(select(Team.id).where(Team.name == team.name))
        assert team_id is not None
        split = resolve_split(context, context.resolver(team_id=team_id), team_id, DataRef(dataset="pots"))
        assert split.options == {"classes": ["road", "sky"]} and split.layout == "mmseg"
        assert len(split.open()) == 2  # classes from the option: without it the read fails like the validator
    finally:
        context.engine.dispose()


def test_unknown_options_are_422_naming_the_allowed_ones(api: ApiEnv, team: TeamClient) -> None:
    uri = (api.settings.data_dir / "anything").as_uri()
    bad = team.post("/v1/datasets", json={"name": "a", "layout": "acdc", "uri": uri, "options": {"colour": "red"}})
    assert bad.status_code == 422
    error = bad.json()["errors"][0]
    assert error["field"] == "options" and "'colour'" in error["message"]
    assert "allowed: condition, label_type" in error["message"]
    none = team.post("/v1/datasets", json={"name": "a", "layout": "folder", "uri": uri, "options": {"x": 1}})
    assert none.status_code == 422 and "allowed: none" in none.json()["errors"][0]["message"]
    assert team.get("/v1/datasets/a").status_code == 404  # nothing stored


def test_option_values_are_the_validators_to_judge(api: ApiEnv, team: TeamClient) -> None:
    root = api.settings.data_dir / "ds" / f"{team.name}-acdc"
    for top in ("rgb_anon", "gt"):
        (root / top / "fog" / "train").mkdir(parents=True)
    body = {"name": "fog", "layout": "acdc", "uri": root.as_uri(), "options": {"condition": "hail"}}
    response = team.post("/v1/datasets", json=body)
    assert response.status_code == 201 and response.json()["status"] == "invalid"
    assert response.json()["options"] == {"condition": "hail"}
    detail = response.json()["report"]["problems"][0]["detail"]
    assert "['hail'] not found" in detail and "available: ['fog']" in detail


def test_a_job_cannot_override_a_datasets_options(ready_team: TeamClient) -> None:
    spec = spec_dict(source={"dataset": "src", "split": "train", "options": {"label_type": "train_id"}})
    response = ready_team.post("/v1/jobs", json=spec)
    assert response.status_code == 422
    error = response.json()["errors"][0]
    assert error["field"] == "source" and "set when the dataset is registered" in error["message"]

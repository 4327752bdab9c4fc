"""Factory helpers for service and API tests."""

from __future__ import annotations

import copy
import secrets
from typing import Any

from sqlalchemy.orm import Session

import gkd_catalog
from service import jobs
from service.models import Job, Team
from service.schemas import JobSpec


def spec_dict(**changes: Any) -> dict[str, Any]:
    """A small valid JobSpec body over datasets named src/tgt (register them before submitting)."""
    body: dict[str, Any] = {
        "name": "tiny",
        "teacher": {"model": "test_vit", "weights": "none"},
        "student": {"model": "test_vit", "weights": "none"},
        "source": {"dataset": "src", "split": "train"},
        "targets": [{"dataset": "tgt", "split": "val"}],
        "method": "gkd",
        "stage1": {"steps": 2, "batch_size": 2, "image_size": 32},
        "stage2": {"steps": 2, "batch_size": 2, "crop_size": 32},
    }
    body.update(copy.deepcopy(changes))
    method = gkd_catalog.METHODS.get(body["method"])
    if "stage1" not in changes and method is not None and "stage1" not in method.stages:
        del body["stage1"]  # a single-stage method: the API refuses a stage1 block it would ignore
    return body


def make_team(session: Session, name: str | None = None) -> Team:
    team = Team(name=name or f"team-{secrets.token_hex(4)}")
    session.add(team)
    session.flush()
    return team


def make_job(
    session: Session, team: Team | None = None, *, status: str = "queued", attempt: int = 0, **spec_changes: Any
) -> Job:
    """A job forced into ``status`` (bypassing the state machine, for setting up transition tests)."""
    team = team or make_team(session)
    job = jobs.create_job(session=session, team_id=team.id, spec=JobSpec.model_validate(spec_dict(**spec_changes)))
    job.status = status
    job.attempt = attempt
    session.flush()
    return job

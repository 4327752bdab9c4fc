"""Registrations whose validation outlasts the request: 202 ``validating``, the outcome written later, jobs
refused meanwhile, a re-registration's validation winning over an older one, and a restart resuming them.

The validations are the real ones over real folders; each waits for the test's signal first, so which of
them is still running is the test's choice rather than the machine's speed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from service import datasets
from service.dataset_validation import DatasetValidator
from service.db import session_scope
from service.schemas import DatasetCreate
from tests.api.conftest import ApiEnv, TeamClient
from tests.api.test_jobs_api import spec_dict
from tests.service._db import write_folder_dataset


class Gated:
    """The real validation, each call held until the test releases it (in call order)."""

    def __init__(self, fail: bool = False) -> None:
        self.gates: list[threading.Event] = []
        self.outcomes: dict[int, str] = {}  # call index -> "done" or the name of what it raised
        self.fail = fail
        self._lock = threading.Lock()

    def __call__(self, **kwargs: Any) -> dict[str, Any]:
        gate = threading.Event()
        with self._lock:
            index = len(self.gates)
            self.gates.append(gate)
        assert gate.wait(30), "the test never released this validation"
        if self.fail:
            raise RuntimeError("the validator broke")
        try:
            report = datasets.validation_report(**kwargs)
        except BaseException as exc:
            self.outcomes[index] = type(exc).__name__
            raise
        self.outcomes[index] = "done"
        return report

    def outcome(self, index: int) -> str:
        deadline = time.monotonic() + 10
        while index not in self.outcomes:
            assert time.monotonic() < deadline, "the validation never ended"
            time.sleep(0.01)
        return self.outcomes[index]

    def release(self, index: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.gates) <= index:
            assert time.monotonic() < deadline, "the validation never started"
            time.sleep(0.01)
        self.gates[index].set()

    def release_all(self) -> None:
        for gate in list(self.gates):
            gate.set()


@pytest.fixture
def gated(api: ApiEnv) -> Iterator[Gated]:
    """The app's validator swapped for one that answers after 0.1 s and validates when told to."""
    original = api.app.state.dataset_validator
    hold = Gated()
    settings = api.settings.model_copy(update={"dataset_inline_validation_s": 0.1})
    api.app.state.dataset_validator = DatasetValidator(settings, api.app.state.session_factory, validate=hold)
    yield hold
    hold.release_all()
    api.app.state.dataset_validator.shutdown()
    api.app.state.dataset_validator = original


def _body(team: TeamClient, name: str) -> dict[str, Any]:
    root = write_folder_dataset(team.env.settings.data_dir / "ds" / f"{team.name}-{name}")
    return {"name": name, "layout": "folder", "uri": root.as_uri()}


def _wait_for(team: TeamClient, name: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        body: dict[str, Any] = team.get(f"/v1/datasets/{name}").json()
        if body["status"] == status:
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_a_slow_validation_is_answered_202_and_finished_later(
    api: ApiEnv, ready_team: TeamClient, gated: Gated
) -> None:
    answer = ready_team.post("/v1/datasets", json=_body(ready_team, "big"))
    assert answer.status_code == 202, answer.text
    assert answer.headers["location"] == "/v1/datasets/big"
    assert answer.json()["status"] == "validating" and answer.json()["report"]["validation_id"]
    assert ready_team.get("/v1/datasets/big").json()["status"] == "validating"

    refused = ready_team.post("/v1/jobs", json=spec_dict(source={"dataset": "big", "split": "train"}))
    assert refused.status_code == 422
    assert "still being validated" in refused.text and "gkd data show" in refused.text

    gated.release(0)
    done = _wait_for(ready_team, "big", "valid")
    assert done["report"]["ok"] is True and "validation_id" not in done["report"]
    accepted = ready_team.post("/v1/jobs", json=spec_dict(source={"dataset": "big", "split": "train"}))
    assert accepted.status_code == 201, accepted.text


def test_registering_again_makes_the_older_validation_lose(api: ApiEnv, team: TeamClient, gated: Gated) -> None:
    first = team.post("/v1/datasets", json=_body(team, "twice")).json()["report"]["validation_id"]
    second = team.post("/v1/datasets", json=_body(team, "twice")).json()["report"]["validation_id"]
    assert first != second
    gated.release(0)  # the first runs on, but stops at its first file: the row belongs to the second now
    assert gated.outcome(0) == "ValidationStopped"
    row = team.get("/v1/datasets/twice").json()
    assert row["status"] == "validating" and row["report"]["validation_id"] == second
    gated.release(1)
    assert _wait_for(team, "twice", "valid")["report"]["ok"] is True


def test_a_validator_that_breaks_leaves_the_set_invalid_with_the_cause(api: ApiEnv, team: TeamClient) -> None:
    original = api.app.state.dataset_validator
    broken = Gated(fail=True)
    settings = api.settings.model_copy(update={"dataset_inline_validation_s": 0.1})
    api.app.state.dataset_validator = DatasetValidator(settings, api.app.state.session_factory, validate=broken)
    try:
        assert team.post("/v1/datasets", json=_body(team, "breaks")).status_code == 202
        broken.release(0)
        row = _wait_for(team, "breaks", "invalid")
        assert row["report"]["problems"][0]["detail"] == "validation failed: RuntimeError: the validator broke"
    finally:
        broken.release_all()
        api.app.state.dataset_validator.shutdown()
        api.app.state.dataset_validator = original


def test_a_restarted_api_validates_what_was_left_validating(api: ApiEnv, team: TeamClient) -> None:
    body = DatasetCreate.model_validate(_body(team, "left-over"))
    with session_scope(api.app.state.session_factory) as session:
        from service.models import Team

        team_id = session.query(Team.id).filter(Team.name == team.name).scalar()
        datasets.store_registration(session=session, team_id=team_id, body=body, report=None)
    assert team.get("/v1/datasets/left-over").json()["status"] == "validating"
    restarted = create_app(api.settings)
    with TestClient(restarted):  # its start-up resumes the row
        row = _wait_for(team, "left-over", "valid")
    assert row["report"]["ok"] is True
    restarted.state.engine.dispose()


def test_a_refused_path_is_still_a_422_at_once_and_busy_waits_answer_202(
    api: ApiEnv, team: TeamClient, gated: Gated
) -> None:
    outside = team.post("/v1/datasets", json={"name": "outside", "layout": "folder", "uri": "file:///etc"})
    assert outside.status_code == 422 and "outside the allowed roots" in outside.text
    assert team.get("/v1/datasets/outside").status_code == 404 and gated.gates == []  # nothing stored or started
    validator = api.app.state.dataset_validator
    validator.settings = validator.settings.model_copy(update={"dataset_inline_validation_s": 30.0})
    taken = [validator._waiting.acquire(blocking=False) for _ in range(api.settings.dataset_validation_threads)]
    assert all(taken)  # every waiting place is held by other requests
    try:
        started = time.monotonic()
        answer = team.post("/v1/datasets", json=_body(team, "busy"))
        assert answer.status_code == 202 and time.monotonic() - started < 5  # not the 30 s wait
    finally:
        for _ in taken:
            validator._waiting.release()


def test_one_process_takes_over_a_left_over_row_and_jobs_stop_on_a_set_validated_again(
    api: ApiEnv, team: TeamClient
) -> None:
    from sqlalchemy import select

    from gkd_core.errors import DatasetError
    from service.models import Dataset, Team
    from worker.pipeline import usable_dataset

    body = DatasetCreate.model_validate(_body(team, "taken"))
    with session_scope(api.app.state.session_factory) as session:
        team_id = session.scalar(select(Team.id).where(Team.name == team.name))
        assert team_id is not None
        row, _ = datasets.store_registration(session=session, team_id=team_id, body=body, report=None)
        dataset_id, seen = row.id, row.updated_at
    with session_scope(api.app.state.session_factory) as session:
        first = datasets.claim_validation(session=session, dataset_id=dataset_id, seen=seen)
    with session_scope(api.app.state.session_factory) as session:
        second = datasets.claim_validation(session=session, dataset_id=dataset_id, seen=seen)
    assert first is not None and second is None
    with session_scope(api.app.state.session_factory) as session:
        assert session.get(Dataset, dataset_id).report["validation_id"] == first  # type: ignore[union-attr]
        with pytest.raises(DatasetError, match="is being validated again"):
            usable_dataset(session, team_id, "taken")


def test_a_team_with_its_share_of_validations_under_way_gets_429_until_one_ends(
    api: ApiEnv, team: TeamClient, other_team: TeamClient, gated: Gated
) -> None:
    validator = api.app.state.dataset_validator
    validator.settings = validator.settings.model_copy(update={"dataset_validations_per_team": 1})
    assert team.post("/v1/datasets", json=_body(team, "first")).status_code == 202
    refused = team.post("/v1/datasets", json=_body(team, "second"))
    assert refused.status_code == 429 and refused.headers["retry-after"] == "10"
    assert "still being validated" in refused.json()["detail"]
    assert team.get("/v1/datasets/second").status_code == 404  # nothing stored
    assert other_team.post("/v1/datasets", json=_body(other_team, "theirs")).status_code == 202  # its own share
    gated.release(0)
    _wait_for(team, "first", "valid")
    deadline = time.monotonic() + 10
    while (answer := team.post("/v1/datasets", json=_body(team, "second"))).status_code == 429:
        assert time.monotonic() < deadline  # the share frees as the callback runs, just after the row is written
        time.sleep(0.05)
    assert answer.status_code == 202


def test_registering_again_cancels_an_older_validation_still_queued(
    api: ApiEnv, team: TeamClient, gated: Gated
) -> None:
    for name in ("busy-a", "busy-b"):  # both pool threads held (two validations at once by default)
        assert team.post("/v1/datasets", json=_body(team, name)).status_code == 202
    first = team.post("/v1/datasets", json=_body(team, "queued")).json()["report"]["validation_id"]
    second = team.post("/v1/datasets", json=_body(team, "queued")).json()["report"]["validation_id"]
    assert first != second
    for index in range(3):  # busy-a, busy-b, then only the newer "queued": the older one never ran
        gated.release(index)
    assert _wait_for(team, "queued", "valid")["report"]["ok"] is True
    _wait_for(team, "busy-b", "valid")
    assert len(gated.gates) == 3


def _broken_validator(**_: Any) -> dict[str, Any]:
    raise RuntimeError("boom")


def test_a_validator_that_breaks_within_the_wait_stores_the_set_invalid_not_a_500(
    api: ApiEnv, team: TeamClient
) -> None:
    original = api.app.state.dataset_validator
    settings = api.settings.model_copy(update={"dataset_inline_validation_s": 10.0})
    api.app.state.dataset_validator = DatasetValidator(
        settings, api.app.state.session_factory, validate=_broken_validator
    )
    try:
        answer = team.post("/v1/datasets", json=_body(team, "breaks-inline"))
        assert answer.status_code == 201 and answer.json()["status"] == "invalid"
        assert answer.json()["report"]["problems"][0]["detail"] == "validation failed: RuntimeError: boom"
    finally:
        api.app.state.dataset_validator.shutdown()
        api.app.state.dataset_validator = original


def test_deleting_a_dataset_stops_its_validation(api: ApiEnv, team: TeamClient, gated: Gated) -> None:
    assert team.post("/v1/datasets", json=_body(team, "doomed")).status_code == 202
    assert team.client_delete("/v1/datasets/doomed").status_code == 204
    gated.release(0)
    assert gated.outcome(0) == "ValidationStopped"
    assert team.get("/v1/datasets/doomed").status_code == 404, "a stopped validation writes nothing"
    assert team.post("/v1/datasets", json=_body(team, "after")).status_code == 202  # its share of the pool is free
    gated.release(1)
    assert _wait_for(team, "after", "valid")["report"]["ok"] is True


def _in_background(team: TeamClient, body: dict[str, Any], answers: dict[str, Any]) -> threading.Thread:
    def register() -> None:
        answers["answer"] = team.post("/v1/datasets", json=body)

    thread = threading.Thread(target=register)
    thread.start()
    return thread


def _wait_for_gates(gated: Gated, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(gated.gates) < count:
        assert time.monotonic() < deadline, "the validation never started"
        time.sleep(0.01)


def test_a_registration_deleted_while_it_waits_is_a_409_and_stores_nothing(
    api: ApiEnv, team: TeamClient, gated: Gated
) -> None:
    assert team.post("/v1/datasets", json=_body(team, "raced")).status_code == 202  # validating, held
    validator = api.app.state.dataset_validator
    validator.settings = validator.settings.model_copy(update={"dataset_inline_validation_s": 20.0})
    answers: dict[str, Any] = {}
    waiting = _in_background(team, _body(team, "raced"), answers)  # registered again: it waits inline
    _wait_for_gates(gated, 2)
    assert team.client_delete("/v1/datasets/raced").status_code == 204
    gated.release(1)
    waiting.join(20)
    assert answers["answer"].status_code == 409, answers["answer"].text
    assert "registered again or deleted while this registration was being validated" in answers["answer"].text
    assert gated.outcome(1) == "ValidationStopped"
    assert team.get("/v1/datasets/raced").status_code == 404, "the deletion stands"


def test_a_refused_re_registration_leaves_the_running_validation_to_finish(
    api: ApiEnv, team: TeamClient, gated: Gated
) -> None:
    """Registering a name again with a URI refused only while validating (s3:// is checked there) stores
    nothing, so the validation under way must go on: stopped, the set would stay `validating` for good."""
    assert team.post("/v1/datasets", json=_body(team, "kept")).status_code == 202
    validator = api.app.state.dataset_validator
    validator.settings = validator.settings.model_copy(update={"dataset_inline_validation_s": 20.0})
    answers: dict[str, Any] = {}
    bad = {"name": "kept", "layout": "folder", "uri": "s3://some-bucket/a//b"}  # an empty key segment
    waiting = _in_background(team, bad, answers)
    _wait_for_gates(gated, 2)
    gated.release(1)
    waiting.join(20)
    assert answers["answer"].status_code == 422, answers["answer"].text
    gated.release(0)
    assert gated.outcome(0) == "done"
    assert _wait_for(team, "kept", "valid")["report"]["ok"] is True

"""The SDK against a running API server with real jobs in its database."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from gkd_client import AuthError, Client, ClientError, ConflictError, NotFoundError, ValidationError
from tests.support.live_api import LiveServer, spec


@pytest.fixture
def client(server: LiveServer) -> Client:
    return Client(server.url, server.api_key, retries=0)


def test_submit_is_idempotent_with_a_key(server: LiveServer, client: Client) -> None:
    first = client.submit_job(spec("idem"), idempotency_key="idem-1")
    again = client.submit_job(spec("idem"), idempotency_key="idem-1")
    assert first.status == "queued" and again.id == first.id
    assert server.enqueuer.jobs.count(first.id) == 1
    assert first.method == "gkd" and first.created_at is not None
    with pytest.raises(ConflictError) as info:
        client.submit_job(spec("idem-other"), idempotency_key="idem-1")
    assert info.value.status == 409


def test_validation_errors_name_the_field(client: Client) -> None:
    with pytest.raises(ValidationError) as info:
        client.submit_job(spec("bad", stage1={"steps": 0}))
    assert info.value.status in (400, 422)
    assert any(e.field.startswith("stage1") and "steps" in e.field for e in info.value.errors), info.value.errors


def test_unknown_job_and_wrong_key(server: LiveServer, client: Client) -> None:
    with pytest.raises(NotFoundError):
        client.get_job("00000000-0000-0000-0000-000000000000")
    with pytest.raises(AuthError) as info:
        Client(server.url, "gkd_000000000000_notarealkeynotarealkey", retries=0).list_jobs()
    assert info.value.status == 401


def test_paging_filters_and_iteration(client: Client) -> None:
    ids = {client.submit_job(spec(f"page-{i}", method="kd")).id for i in range(7)}
    page = client.list_jobs(method="kd", page_size=3)
    assert len(page.items) == 3 and page.next_page_token
    stamps = [j.created_at for j in page.items if j.created_at is not None]
    assert len(stamps) == 3 and stamps == sorted(stamps, reverse=True)
    seen = [j.id for j in client.iter_jobs(method="kd", page_size=3)]
    assert set(seen) == ids and len(seen) == len(ids)
    assert all(j.status == "queued" for j in client.iter_jobs(status="queued", page_size=100))


def test_run_metrics_events_download_and_wait(server: LiveServer, client: Client, tmp_path: Path) -> None:
    job = client.submit_job(spec("full-run"))
    server.start(job.id)
    server.advance(job.id, "stage1", 0.3, steps=range(0, 10))
    rows = client.metrics(job.id)
    assert {r.name for r in rows} == {"loss", "loss_cls"} and max(r.step for r in rows) == 9
    assert all(r.step > 5 for r in client.metrics(job.id, since_step=5))
    running = client.get_job(job.id)
    assert (running.status, running.phase, running.progress, running.eta_s) == ("running", "stage1", 0.3, 90.0)

    tail = client.metric_page(job.id, tail=3)
    assert [(r.stage, r.step, r.name) for r in tail.rows] == [("stage1", 8, "loss_cls"), ("stage1", 9, "loss"),
                                                             ("stage1", 9, "loss_cls")]  # fmt: skip
    weights = bytes(range(256)) * 400
    server.advance(job.id, "stage2", 0.8, steps=range(0, 5))
    followed = client.metric_page(job.id, after=tail.next_after)
    assert [(r.stage, r.step) for r in followed.rows] == [("stage2", s) for s in range(5)] and not followed.more
    every = client.all_metrics(job.id)
    assert len(every) == 25 and [r.stage for r in every].count("stage2") == 5  # 10 x 2 stage-1 rows, 5 of stage 2
    assert [r.step for r in client.metrics(job.id, stage="stage2", since_step=2)] == [3, 4]
    with pytest.raises(ClientError, match="exactly one of after"):
        client.metric_page(job.id)
    server.succeed(job.id, {"student.safetensors": ("student", weights), "model_card.md": ("model_card", b"# card")})
    done = client.wait_for(job, timeout=5, poll_s=0.05)
    assert done.status == "succeeded" and done.summary.student["synth-fog"].miou == pytest.approx(0.412)
    assert set(done.summary.references) == {"teacher", "student_frozen"}

    types = [e.type for e in client.events(job.id)]
    assert types[0] == "created" and "phase" in types and len(types) >= 4

    artifact = client.artifact(job.id, "student.safetensors")
    assert artifact.size == len(weights) and artifact.sha256 == hashlib.sha256(weights).hexdigest()
    path = client.download(artifact, tmp_path)
    assert path.read_bytes() == weights


def test_cancel_and_conflict(client: Client) -> None:
    job = client.submit_job(spec("to-cancel"))
    cancelled = client.cancel_job(job.id)
    assert cancelled.status == "cancelled" and cancelled.terminal
    with pytest.raises(ConflictError):
        client.cancel_job(job.id)


def test_cancel_an_evaluation(server: LiveServer, client: Client) -> None:
    job = client.submit_job(spec("eval-then-cancel"))
    server.start(job.id)
    server.succeed(job.id, {})
    evaluation = client.evaluate(job.id, [{"dataset": "synth-fog", "split": "val"}])
    cancelled = client.cancel_evaluation(evaluation.id)
    assert cancelled.id == evaluation.id and cancelled.status == "cancelled" and cancelled.terminal
    with pytest.raises(ConflictError):
        client.cancel_evaluation(evaluation.id)


def test_evaluation_round_trip(server: LiveServer, client: Client) -> None:
    job = client.submit_job(spec("eval-me"))
    server.start(job.id)
    server.succeed(job.id, {})
    server.finish_evaluations(
        {"synth-rain": {"miou": 0.37, "per_class_iou": [0.5, None], "pixel_accuracy": 0.8, "images": 4}}
    )
    evaluation = client.evaluate(job.id, [{"dataset": "synth-fog", "split": "val"}])
    result = client.wait_for_evaluation(evaluation, timeout=60, poll_s=0.05)
    assert result.status == "succeeded" and result.results["synth-rain"].miou == pytest.approx(0.37)
    assert result.results["synth-rain"].per_class_iou == [0.5, None]

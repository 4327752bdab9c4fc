"""worker.pipeline.run_job on a real SQLite database, a real local store and the tiny benchmark.

No mocks of the pipeline itself: each test submits a job through the service layer, runs it in this
process exactly as the Celery task would, and reads back the rows and stored objects. Faults are
injected only at the edges (a store that refuses uploads, garbage bytes in an image).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sqlite3
import tarfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from service import auth, evaluations, jobs
from service.datasets import register_dataset
from service.db import upgrade_database
from service.models import Job, JobEvent, JobStatus, utcnow
from service.schemas import DataRef, DatasetCreate, JobSpec
from service.settings import Settings
from service.storage import LocalStore, StorageUnavailable, StoredObject
from service.training_logs import log_key
from tests.support.worker_env import tiny_spec
from worker.context import WorkerContext
from worker.evaluation import run_evaluation
from worker.pipeline import run_job
from worker.sweeper import sweep_once
from worker.work_dir_sync import checkpoint_prefix

EXPECTED_ARTIFACTS = {
    "student.safetensors", "student.onnx", "model_card.json", "README.md", "tensorboard.tar.gz", "report.json",
    "report.png",
}
PHASES = ["stage1", "stage2", "references", "evaluating", "exporting"]


@dataclass
class Env:
    """A worker context over a fresh database in ``tmp`` with one team and the benchmark registered."""

    context: WorkerContext
    team_id: str

    def submit(self, spec: dict[str, Any], *, max_attempts: int = 3) -> str:
        with self.context.session() as session:
            job = jobs.create_job(
                session=session, team_id=self.team_id, spec=JobSpec.model_validate(spec), max_attempts=max_attempts
            )
            return job.id

    def job(self, job_id: str) -> Job:
        with self.context.session() as session:
            return jobs.get_job(session=session, job_id=job_id)

    def events(self, job_id: str) -> list[JobEvent]:
        with self.context.session() as session:
            return jobs.list_events(session=session, job_id=job_id)

    def metric_steps(self, job_id: str) -> dict[str, set[int]]:
        with self.context.session() as session:
            rows = jobs.list_metrics(session=session, job_id=job_id)
        steps: dict[str, set[int]] = {}
        for row in rows:
            steps.setdefault(row.stage, set()).add(row.step)
        return steps

    def manifest(self, job_id: str) -> dict[str, str]:
        raw = self.context.store.get_bytes(f"{checkpoint_prefix(job_id)}/manifest.json")
        files: dict[str, str] = json.loads(raw)["files"]
        return files

    def object_key(self, job_id: str, rel: str) -> str:
        """Where the manifest says the pushed version of ``rel`` is stored."""
        raw = self.context.store.get_bytes(f"{checkpoint_prefix(job_id)}/manifest.json")
        return f"{checkpoint_prefix(job_id)}/files/{json.loads(raw)['objects'][rel]}"


def make_env(tmp: Path, bench: Path, *, source_root: Path | None = None, **settings: Any) -> Env:
    """Migrate a SQLite db under ``tmp``, create a team and register every benchmark domain."""
    values: dict[str, Any] = {
        "data_dir": tmp / "data",
        "allowed_roots": [bench, tmp],
        "heartbeat_interval_s": 0.5,
        **settings,
    }
    config = Settings(**values)
    upgrade_database(config)
    context = WorkerContext(config)
    with context.session() as session:
        _, key = auth.create_api_key(session=session, team_name="vision")
        team_id = key.team_id
        for domain in ("toon", "clear", "night", "fog", "retro"):
            root = source_root if domain == "toon" and source_root is not None else bench / domain
            body = DatasetCreate(name=domain, layout="folder", uri=root.as_uri())
            dataset, _ = register_dataset(session=session, team_id=team_id, body=body, settings=config)
            assert dataset.status == "valid", dataset.report
    return Env(context, team_id)


def sent_messages(env: Env) -> list[tuple[str, str]]:
    """(queue name, payload) of every message in the embedded broker (kombu's SQLAlchemy transport)."""
    path = Path(env.context.settings.data_dir) / "broker.db"
    if not path.exists():
        return []
    broker = sqlite3.connect(path)
    try:
        if not broker.execute("select 1 from sqlite_master where name = 'kombu_message'").fetchall():
            return []  # nothing was ever sent
        rows = broker.execute(
            "select q.name, m.payload from kombu_message m join kombu_queue q on q.id = m.queue_id"
        ).fetchall()
    finally:
        broker.close()
    return [(str(queue), str(payload)) for queue, payload in rows]


@pytest.fixture
def env(tmp_path: Path, tiny_bench: Path) -> Env:
    return make_env(tmp_path, tiny_bench)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_job_runs_end_to_end_and_redelivery_does_nothing(env: Env) -> None:
    targets = [{"dataset": "fog", "split": "val"}, {"dataset": "night", "split": "val"}]
    job_id = env.submit(tiny_spec("e2e", targets=targets, export={"int8": True, "calibration_images": 4}))
    started = time.monotonic()
    run_job(job_id, context=env.context)
    took = time.monotonic() - started

    job = env.job(job_id)
    assert job.status == JobStatus.SUCCEEDED.value, job.error_detail
    assert job.attempt == 1 and job.progress == pytest.approx(1.0)
    events = env.events(job_id)
    assert [e.message for e in events if e.type == "phase"] == [f"phase {p}" for p in PHASES]
    assert events[-1].to_status == "succeeded"

    steps = env.metric_steps(job_id)
    assert steps["stage1b"] == set(range(1, 5)), steps
    assert steps["stage2"] == set(range(1, 5)), steps
    assert steps["ref_student_frozen"] == set(range(1, 5)), steps

    with env.context.session() as session:
        artifacts = {a.name: a for a in jobs.list_artifacts(session=session, job_id=job_id)}
    assert set(artifacts) == EXPECTED_ARTIFACTS | {"student.int8.onnx"}
    for name, artifact in artifacts.items():
        data = env.context.store.get_bytes(artifact.storage_key)
        assert artifact.size == len(data) > 0, name
        assert artifact.sha256 == _sha256(data), name
    assert artifacts["student.safetensors"].kind == "student" and artifacts["student.onnx"].kind == "onnx"
    assert artifacts["report.json"].kind == artifacts["report.png"].kind == "report"
    # The loss curves leave as TensorBoard event files: one folder per stage, every stage that logged.
    archive = io.BytesIO(env.context.store.get_bytes(artifacts["tensorboard.tar.gz"].storage_key))
    with tarfile.open(fileobj=archive) as tar:
        stages = {Path(m.name).parent.name for m in tar.getmembers() if "events.out.tfevents" in m.name}
    assert {"stage1b", "stage2", "ref_student_frozen"} <= stages, stages

    summary = job.summary
    assert summary is not None
    for table in (summary["student"], summary["references"]["student_frozen"]):
        assert {"fog/val", "night/val"} <= set(table)
        # The in-domain row is the source's held-out val split, never its training split.
        assert "toon/val" in table and "toon/train" not in table
        for row in table.values():
            assert 0.0 <= row["miou"] <= 1.0 and row["images"] > 0 and len(row["per_class_iou"]) == 8
    # What ships is scored as shipped: the ONNX file and its INT8 version, per domain, beside PyTorch.
    assert set(summary["deployed"]) == {"onnx", "int8"}
    for kind, rows in summary["deployed"].items():
        assert set(rows) == set(summary["student"]), kind
        for domain, row in summary["student"].items():
            assert row[kind]["miou"] == rows[domain]["miou"]
            assert row[kind]["diff_points"] == pytest.approx((rows[domain]["miou"] - row["miou"]) * 100, abs=1e-3)
    assert all(abs(row["onnx"]["diff_points"]) < 1.0 for row in summary["student"].values())
    # The robustness report travels in the summary too: gkd uses the teacher, so CKA is there per domain.
    assert set(summary["report"]["cka_to_teacher"]["student"]) == set(summary["student"])
    assert summary["report"]["miou"]["student (int8)"] == {d: r["miou"] for d, r in summary["deployed"]["int8"].items()}
    drifting = [e.message for e in events if e.type == "parity"]
    rows = summary["student"].values()
    assert len(drifting) == sum(not row[k]["within_tolerance"] for row in rows for k in ("onnx", "int8"))

    # The worker hands the ranks a prepared-store folder beside the dataset cache; gkd_core decides per split.
    prepared = [e.message for e in events if "prepared" in e.message]
    assert prepared and all(("reading a prepared store" in m) or ("not prepared (" in m) for m in prepared), prepared

    # A redelivered message for a finished job changes nothing.
    run_job(job_id, context=env.context)
    assert len(env.events(job_id)) == len(events)
    again = env.job(job_id)
    assert (again.status, again.attempt, again.summary) == ("succeeded", 1, summary)
    print(f"tiny job through run_job: {took:.1f} s")

    # A follow-up evaluation scores what shipped too: the ONNX file and its INT8 version beside PyTorch.
    with env.context.session() as session:
        evaluation_id = evaluations.create_evaluation(
            session=session, job=jobs.get_job(session=session, job_id=job_id),
            targets=[DataRef(dataset="night", split="val")],
        ).id  # fmt: skip
    run_evaluation(evaluation_id, context=env.context, worker="w@host")
    with env.context.session() as session:
        evaluation = evaluations.get_evaluation(session=session, evaluation_id=evaluation_id)
        assert evaluation.status == "succeeded", evaluation.error
        results = evaluation.results
    assert results is not None and set(results) == {"night/val"}
    night = results["night/val"]
    assert 0.0 <= night["miou"] <= 1.0 and night["images"] > 0
    for kind in ("onnx", "int8"):
        assert set(night[kind]) == {"miou", "diff_points", "within_tolerance"}, kind
        assert night[kind]["diff_points"] == pytest.approx((night[kind]["miou"] - night["miou"]) * 100, abs=1e-3)
    assert abs(night["onnx"]["diff_points"]) < 1.0


def test_the_worker_speed_setting_reaches_the_ranks(tmp_path: Path, tiny_bench: Path) -> None:
    """GKD_SPEED travels in the launch file: every training stage of the job runs with it, and says so."""
    env = make_env(tmp_path, tiny_bench, speed="attention=eager,fused_adamw=on")
    job_id = env.submit(tiny_spec("speed"))
    run_job(job_id, context=env.context)
    assert env.job(job_id).status == JobStatus.SUCCEEDED.value, env.job(job_id).error_detail
    messages = [e.message for e in env.events(job_id)]
    lines = [m for m in messages if "speed options" in m]
    assert {m.split(":")[0] for m in lines} == {"stage1b", "stage2", "ref_student_frozen"}, lines
    assert all("attention eager, fused AdamW on" in m for m in lines), lines
    # GKD_RANK_NICE (default 10) is what the training process reports it runs at, above this test's own.
    expected = min(19, os.nice(0) + 10)
    assert f"training processes run at niceness {expected}: the worker and the API come first" in messages


def test_corrupt_image_fails_with_reason_user_naming_the_file(tmp_path: Path, tiny_bench: Path) -> None:
    source = tmp_path / "toon"
    shutil.copytree(tiny_bench / "toon", source)
    env = make_env(tmp_path, tiny_bench, source_root=source)
    broken = sorted((source / "images" / "train").glob("*.png"))[3]
    broken.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image at all" * 4)  # after registration: found late

    job_id = env.submit(tiny_spec("corrupt"))
    run_job(job_id, context=env.context)

    job = env.job(job_id)
    assert job.status == "failed", job.status
    assert job.error_reason == "user", (job.error_reason, job.error_detail)
    assert job.error_detail is not None and broken.name in job.error_detail, job.error_detail
    assert job.attempt == 1  # user errors are not retried
    log = env.context.store.get_bytes(log_key(job_id, 1)).decode()  # what the ranks printed, kept for the user
    assert "Traceback (most recent call last)" in log and broken.name in log


class FlakyStore(LocalStore):
    """A local store whose uploads fail as an unreachable S3 would, for the first ``outage_s`` seconds
    after its first upload (forever by default); reads still work."""

    def __init__(self, root: Path, outage_s: float = float("inf")) -> None:
        super().__init__(root)
        self.outage_s = outage_s
        self.down_since: float | None = None
        self.refused = 0

    def put_file(self, key: str, path: Path) -> StoredObject:
        now = time.monotonic()
        self.down_since = now if self.down_since is None else self.down_since
        if now - self.down_since < self.outage_s:
            self.refused += 1
            raise StorageUnavailable(f"injected: storage unreachable while uploading {key}")
        return super().put_file(key, path)


def test_a_storage_outage_within_the_window_is_waited_out_without_spending_an_attempt(
    tmp_path: Path, tiny_bench: Path
) -> None:
    env = make_env(tmp_path, tiny_bench, outage_window_s=60, retry_backoff_base_s=0.2, retry_backoff_max_s=1)
    store = FlakyStore(Path(env.context.settings.data_dir) / "artifacts", outage_s=3.0)
    env.context.store = store
    job_id = env.submit(tiny_spec("flaky"), max_attempts=1)

    run_job(job_id, context=env.context)

    job = env.job(job_id)
    assert store.refused >= 2
    assert (job.status, job.attempt) == ("succeeded", 1), (job.status, job.error_detail)
    waits = [e for e in env.events(job_id) if e.type == "outage"]
    assert waits and "StorageUnavailable" in waits[0].message and "no attempt is used up" in waits[0].message
    with env.context.session() as session:
        assert {a.name for a in jobs.list_artifacts(session=session, job_id=job_id)} == EXPECTED_ARTIFACTS


def test_a_storage_outage_past_the_window_fails_infra_with_its_cause(tmp_path: Path, tiny_bench: Path) -> None:
    env = make_env(tmp_path, tiny_bench, outage_window_s=1.5, retry_backoff_base_s=0.2, retry_backoff_max_s=0.5)
    store = FlakyStore(Path(env.context.settings.data_dir) / "artifacts")
    env.context.store = store
    job_id = env.submit(tiny_spec("flaky"), max_attempts=3)

    run_job(job_id, context=env.context)

    job = env.job(job_id)
    assert store.refused >= 2
    assert (job.status, job.error_reason, job.attempt) == ("failed", "infra", 1), (job.status, job.error_detail)
    detail = job.error_detail or ""
    assert "OutageTooLong" in detail and "GKD_OUTAGE_WINDOW_S=1.5" in detail, detail
    assert "StorageUnavailable" in detail and "injected: storage unreachable" in detail, detail
    with env.context.session() as session:
        assert jobs.list_artifacts(session=session, job_id=job_id) == []  # nothing half-stored is listed
    assert not any(job_id in payload for _, payload in sent_messages(env))  # no retry: the window is spent


def test_cancel_stops_a_running_job_after_a_checkpoint(env: Env) -> None:
    job_id = env.submit(tiny_spec("cancel", stage1_steps=400, checkpoint_every=100))
    runner = threading.Thread(target=run_job, args=(job_id,), kwargs={"context": env.context}, daemon=True)
    runner.start()

    deadline = time.monotonic() + 90
    while not env.metric_steps(job_id).get("stage1b"):
        assert runner.is_alive() and time.monotonic() < deadline, env.job(job_id).error_detail
        time.sleep(0.2)
    with env.context.session() as session:
        assert jobs.request_cancel(session=session, job_id=job_id).status == "cancelling"
    asked = time.monotonic()
    runner.join(timeout=30)
    stopped_in = time.monotonic() - asked
    assert not runner.is_alive(), "run_job did not return after cancel"

    job = env.job(job_id)
    assert job.status == "cancelled", (job.status, job.error_detail)
    assert stopped_in < 20.0, f"cancel took {stopped_in:.1f} s"  # polling, checkpoint, teardown on a slow machine
    messages = [e.message for e in env.events(job_id)]
    assert any("stopped on request at step" in m for m in messages), messages
    stage1 = [rel for rel in env.manifest(job_id) if rel.startswith("checkpoints/stage1/") and rel.endswith(".pt")]
    assert stage1, env.manifest(job_id)
    assert all(env.context.store.exists(env.object_key(job_id, rel)) for rel in stage1)
    print(f"cancel -> cancelled in {stopped_in:.2f} s; stored {stage1}")


def _go_stale(env: Env, job_id: str) -> None:
    with env.context.session() as session:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow() - timedelta(hours=1)))


def test_sweeper_requeues_stale_jobs_then_fails_them(tmp_path: Path, tiny_bench: Path) -> None:
    env = make_env(tmp_path, tiny_bench, heartbeat_stale_s=30)
    lost = env.submit(tiny_spec("lost"), max_attempts=2)
    alive = env.submit(tiny_spec("alive"), max_attempts=2)
    for job_id in (lost, alive):
        with env.context.session() as session:
            assert jobs.claim_job(session=session, job_id=job_id, worker="gone") is not None
    _go_stale(env, lost)

    first = sweep_once(env.context)
    assert first.requeued == [lost] and first.failed == []
    assert env.job(lost).status == "queued" and env.job(alive).status == "running"
    assert any("worker lost" in e.message for e in env.events(lost))

    with env.context.session() as session:
        assert jobs.claim_job(session=session, job_id=lost, worker="gone-again") is not None
    _go_stale(env, lost)
    second = sweep_once(env.context)
    assert second.failed == [lost] and second.requeued == []
    job = env.job(lost)
    assert (job.status, job.error_reason, job.attempt) == ("failed", "infra", 2)
    assert env.job(alive).status == "running"  # its heartbeat is fresh


def test_a_cancel_landing_after_training_cancels_the_job_and_keeps_its_artifacts(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from worker import pipeline

    publish = pipeline.JobRun._publish

    def cancel_then_publish(self: pipeline.JobRun, exports: dict[str, Path], summary: dict[str, Any]) -> None:
        with env.context.session() as session:  # the user's cancel arrives between training and publishing
            jobs.request_cancel(session=session, job_id=self.job_id)
        publish(self, exports, summary)

    monkeypatch.setattr(pipeline.JobRun, "_publish", cancel_then_publish)
    job_id = env.submit(tiny_spec("late-cancel", stage1_steps=2, references=[], export={"onnx": False}))
    run_job(job_id, context=env.context)

    job = env.job(job_id)
    assert (job.status, job.error_reason) == ("cancelled", None), job.error_detail
    assert env.events(job_id)[-1].message == "cancelled after training had finished; its artifacts and results are kept"
    assert job.summary is not None and "student" in job.summary
    with env.context.session() as session:
        names = {a.name for a in jobs.list_artifacts(session=session, job_id=job_id)}
    assert "student.safetensors" in names and "report.json" in names

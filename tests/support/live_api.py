"""A real API server for SDK, CLI and dashboard tests: uvicorn in a thread over a temporary SQLite db.

``LiveServer`` also plays the worker: it claims jobs and records phases, metrics, artifacts and
summaries through the service layer, exactly as worker/pipeline.py does through the same functions.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy.orm import Session, sessionmaker

import gkd_catalog
from api.main import create_app
from service import auth, evaluations, jobs
from service.db import make_engine, session_factory, session_scope, upgrade_database
from service.models import Dataset, utcnow
from service.settings import Settings, get_settings
from service.storage import ArtifactStore, get_store

SUMMARY = {
    "student": {"synth-fog": {"miou": 0.412}, "synth-night": {"miou": 0.335}},
    "references": {
        "teacher": {"synth-fog": {"miou": 0.523}, "synth-night": {"miou": 0.47}},
        "student_frozen": {"synth-fog": {"miou": 0.29}, "synth-night": {"miou": 0.21}},
    },
}


def spec(name: str = "tiny-gkd", **changes: Any) -> dict[str, Any]:
    """A small valid JobSpec over the datasets the server registers."""
    body: dict[str, Any] = {
        "name": name,
        "teacher": {"model": "vit_small_patch14_dinov2", "weights": "none"},
        "student": {"model": "deit_tiny_patch16_224", "weights": "none"},
        "source": {"dataset": "synth-source", "split": "train"},
        "targets": [{"dataset": "synth-fog", "split": "val"}, {"dataset": "synth-night", "split": "val"}],
        "method": "gkd",
        "stage1": {"steps": 40, "batch_size": 4, "image_size": 64},
        "stage2": {"steps": 40, "batch_size": 2, "crop_size": 64},
    }
    body.update(changes)
    method = gkd_catalog.METHODS.get(body["method"])
    if "stage1" not in changes and method is not None and "stage1" not in method.stages:
        del body["stage1"]  # a single-stage method: the API refuses a stage1 block it would ignore
    return body


@dataclass
class LiveServer:
    url: str
    api_key: str
    team_id: str
    settings: Settings
    factory: sessionmaker[Session]
    store: ArtifactStore
    enqueuer: RecordingEnqueuer

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        with session_scope(self.factory) as session:
            yield session

    # ----- the simulated worker ---------------------------------------------------------------

    def start(self, job_id: str) -> None:
        with self.session() as s:
            assert jobs.claim_job(session=s, job_id=job_id, worker="test-worker") is not None

    def advance(
        self, job_id: str, phase: str, progress: float, *, steps: range = range(0), eta_s: float = 90.0
    ) -> None:
        """Move to ``phase`` and log loss rows for ``steps`` (decreasing, as training does)."""
        stage = phase if phase in ("stage1", "stage2") else "stage2"
        rows = []
        for step in steps:
            rows.append({"stage": stage, "step": step, "epoch": 0, "name": "loss", "value": 2.0 / (1 + 0.1 * step)})
            if stage == "stage1":
                rows.append(
                    {"stage": stage, "step": step, "epoch": 0, "name": "loss_cls", "value": 1.0 / (1 + 0.05 * step)}
                )
        with self.session() as s:
            jobs.set_progress(session=s, job_id=job_id, progress=progress, eta_s=eta_s, phase=phase)
            jobs.record_metrics(session=s, job_id=job_id, rows=rows)

    def succeed(self, job_id: str, artifacts: dict[str, tuple[str, bytes]], summary: dict[str, Any] = SUMMARY) -> None:
        with self.session() as s:
            for name, (kind, data) in artifacts.items():
                stored = self.store.put_bytes(f"jobs/{job_id}/{name}", data)
                jobs.add_artifact(
                    session=s,
                    job_id=job_id,
                    name=name,
                    kind=kind,
                    size=stored.size,
                    sha256=stored.sha256,
                    storage_key=stored.key,
                )
            # jobs.finish() also lists "cancelling" as a source, which succeeded may not come from.
            jobs.transition(
                session=s,
                job_id=job_id,
                to="succeeded",
                expected_from="running",
                message="succeeded",
                values={"summary": summary, "progress": 1.0, "eta_s": None},
            )

    def fail(self, job_id: str, detail: str) -> None:
        with self.session() as s:
            jobs.finish(session=s, job_id=job_id, status="failed", reason="user", detail=detail)

    def finish_evaluations(self, results: dict[str, Any], timeout: float = 60.0) -> None:
        """Run every queued evaluation to success (in the background, like a worker would)."""

        def work() -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with self.session() as s:
                    from sqlalchemy import select

                    from service.models import Evaluation

                    ids = list(s.scalars(select(Evaluation.id).where(Evaluation.status == "queued")))
                for eval_id in ids:
                    with self.session() as s:
                        evaluations.claim_evaluation(session=s, evaluation_id=eval_id)
                    with self.session() as s:
                        evaluations.finish_evaluation(
                            session=s, evaluation_id=eval_id, status="succeeded", results=results
                        )
                    return
                time.sleep(0.05)

        threading.Thread(target=work, daemon=True).start()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RecordingEnqueuer:
    """Stands in for the broker: records what the API enqueued (the test plays the worker)."""

    def __init__(self) -> None:
        self.jobs: list[str] = []
        self.evaluations: list[str] = []

    def enqueue_job(self, job_id: str, queue: str = "gpu") -> None:
        self.jobs.append(job_id)

    def enqueue_evaluation(self, evaluation_id: str, queue: str = "gpu") -> None:
        self.evaluations.append(evaluation_id)


@contextlib.contextmanager
def live_server(
    tmp: Path,
    datasets: tuple[str, ...] = ("synth-source", "synth-fog", "synth-night"),
    env: dict[str, str] | None = None,
) -> Iterator[LiveServer]:
    """Start the API on a free port over a fresh database with one team, one key and datasets.

    ``env`` sets more GKD_* variables: artifacts go to a local folder unless it points them elsewhere
    (GKD_STORAGE_URL and the GKD_S3_* variables, e.g. ``SeaweedS3.env``).
    """
    variables = {
        "GKD_DATA_DIR": str(tmp),
        "GKD_DATABASE_URL": f"sqlite:///{tmp / 'gkd.db'}",
        "GKD_BROKER_URL": f"sqla+sqlite:///{tmp / 'broker.db'}",
        "GKD_STORAGE_URL": (tmp / "artifacts").as_uri(),
        **(env or {}),
    }
    old = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    get_settings.cache_clear()
    settings = get_settings()
    try:
        upgrade_database(settings)
        engine = make_engine(settings)
        factory = session_factory(engine)
        (tmp / "artifacts").mkdir(exist_ok=True)
        store = get_store(settings, create_bucket=True)
        with session_scope(factory) as s:
            key, row = auth.create_api_key(session=s, team_name="vision-team")
            team_id = row.team_id
            for name in datasets:
                s.add(
                    Dataset(
                        team_id=team_id,
                        name=name,
                        layout="folder",
                        uri=(tmp / name).as_uri(),
                        classes=["road", "car"],
                        status="valid",
                        report={"ok": True, "problems": []},
                        created_at=utcnow(),
                        updated_at=utcnow(),
                    )
                )
        port = _free_port()
        enqueuer = RecordingEnqueuer()
        app = create_app(settings, enqueuer=enqueuer)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.02)
        try:
            yield LiveServer(f"http://127.0.0.1:{port}", key, team_id, settings, factory, store, enqueuer)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            engine.dispose()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()

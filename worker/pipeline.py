"""Run one stored job through gkd_core: the one place where the service meets the ML library.

The database is the source of truth. A task claims the job with a compare-and-set (a redelivered
message for a running or finished job does nothing), pulls the resume state of earlier attempts
from storage, runs the experiment with callbacks that write progress to the database and push
checkpoints to storage, then uploads the exports as artifacts and ends the job. Failures are told
apart: bad input found late fails with reason "user"; storage or database faults requeue the job
with backoff until max_attempts, then fail with reason "infra".
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import gkd_catalog
from gkd_core.engine.metrics import SegMetrics
from gkd_core.engine.trainer import StopRequested
from gkd_core.errors import GKDError
from gkd_core.experiment import DatasetSplit, ExperimentResult, run_experiment
from service import jobs
from service.datasets import get_dataset
from service.errors import DomainError
from service.models import Job, JobStatus
from service.queue import enqueue_job
from service.schemas import DataRef, JobSpec
from service.uris import UriError, UriResolver
from worker import shutdown
from worker.context import WorkerContext, get_context
from worker.heartbeat import Heartbeat
from worker.progress import JobCallbacks
from worker.retry import BackoffPolicy, is_transient
from worker.spec_convert import local_split, to_experiment_config
from worker.work_dir_sync import WorkDirSync

_logger = logging.getLogger(__name__)

# Bad input the user can fix: these fail the job with reason "user" and the exception's message.
USER_ERRORS: tuple[type[BaseException], ...] = (GKDError, UriError, DomainError, ValueError, FileNotFoundError)
EVAL_SPLIT = "val"
ARTIFACT_KINDS = {".safetensors": "student", ".onnx": "onnx", ".json": "model_card", ".md": "model_card"}


def _phases(spec: JobSpec) -> list[str]:
    return gkd_catalog.job_phases(gkd_catalog.method(spec.method).stages, bool(spec.references))


def metrics_summary(result: ExperimentResult) -> dict[str, Any]:
    """The JSON summary shown on GET /v1/jobs/{id}: per-domain mIoU of the student and each reference."""

    def table(per_domain: dict[str, SegMetrics]) -> dict[str, Any]:
        return {domain: m.to_dict() for domain, m in per_domain.items()}

    return {
        "student": table(result.student),
        "references": {name: table(rows) for name, rows in result.references.items()},
    }


def device() -> str:
    """Where this worker trains: the GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_split(context: WorkerContext, resolver: UriResolver, team_id: str, ref: DataRef) -> DatasetSplit:
    """A team's registered dataset split as a gkd_core DatasetSplit over a local folder (fetched if remote)."""
    with context.session() as session:
        dataset = get_dataset(session=session, team_id=team_id, name=ref.dataset)
        uri, layout = dataset.uri, dataset.layout
    return local_split(resolver.resolve(uri), layout, ref)


class JobRun:
    """One attempt at one job."""

    def __init__(self, context: WorkerContext, job: Job) -> None:
        self.context = context
        self.job_id = job.id
        self.team_id = job.team_id
        self.attempt = job.attempt
        self.spec = JobSpec.model_validate(job.spec)
        self.work_dir = context.scratch / job.id
        self.sync = WorkDirSync(context.store, job.id, self.work_dir)
        self.resolver = context.resolver(team_id=job.team_id)

    def event(self, message: str, type: str = "info") -> None:
        with self.context.session() as session:
            jobs.record_event(session=session, job_id=self.job_id, message=message, type=type)

    def dataset_ref(self, ref: DataRef) -> DatasetSplit:
        return resolve_split(self.context, self.resolver, self.team_id, ref)

    def source_eval_ref(self) -> DatasetSplit | None:
        """The source's held-out split for the in-domain row: "val" when the dataset has one."""
        source = self.spec.source
        with self.context.session() as session:
            splits = (get_dataset(session=session, team_id=self.team_id, name=source.dataset).report or {}).get(
                "splits", {}
            )
        if source.split == EVAL_SPLIT or EVAL_SPLIT not in splits:
            return None
        return self.dataset_ref(DataRef(dataset=source.dataset, split=EVAL_SPLIT))

    def resolve_weights(self, uri: str) -> str:
        return str(self.resolver.resolve(uri))

    def prepare(self) -> None:
        """Start from a clean local folder filled with the stored resume state, if any."""
        shutil.rmtree(self.work_dir, ignore_errors=True)
        self.work_dir.mkdir(parents=True)
        pulled = self.sync.pull()
        if pulled:
            self.event(f"attempt {self.attempt}: restored {pulled} resume files from storage")

    def run(self) -> None:
        self.prepare()
        config = to_experiment_config(
            self.spec,
            dataset_ref=self.dataset_ref,
            resolve_weights=self.resolve_weights,
            device=device(),
            source_eval=self.source_eval_ref(),
        )
        callbacks = JobCallbacks(self.context, self.job_id, self.sync, _phases(self.spec))
        beat = Heartbeat(
            lambda: self._beat(callbacks), interval_s=self.context.settings.heartbeat_interval_s, name=self.job_id
        )
        with beat:
            try:
                result = run_experiment(config, work_dir=self.work_dir, callbacks=callbacks)
            except StopRequested:
                callbacks.flush()
                self.sync.push()
                self._stopped()
                return
            callbacks.flush()
        self.sync.push()
        self._publish(result)

    def _beat(self, callbacks: JobCallbacks) -> None:
        with self.context.session() as session:
            if jobs.heartbeat(session=session, job_id=self.job_id, attempt=self.attempt):
                callbacks.request_stop()

    def _stopped(self) -> None:
        """The loop stopped on request: cancelled, the worker is shutting down, or the job moved on."""
        requeued = False
        with self.context.session() as session:
            job = jobs.get_job(session=session, job_id=self.job_id)
            ours = job.attempt == self.attempt
            if job.status == JobStatus.CANCELLING.value and ours:
                jobs.finish(session=session, job_id=self.job_id, status=JobStatus.CANCELLED, detail="cancelled")
            elif job.status == JobStatus.RUNNING.value and ours and shutdown.requested():
                jobs.transition(
                    session=session,
                    job_id=self.job_id,
                    to=JobStatus.QUEUED,
                    expected_from=JobStatus.RUNNING,
                    message=f"worker shutting down: checkpoint stored, requeued after attempt {self.attempt} "
                    "(a handoff does not use up an attempt)",
                    # The next claim adds one again, so a rolling restart never exhausts max_attempts.
                    values={"attempt": Job.attempt - 1, "heartbeat_at": None, "phase": None, "eta_s": None},
                )
                requeued = True
            else:
                _logger.warning("job %s: attempt %d no longer owns the job; stopping", self.job_id, self.attempt)
        if requeued:
            enqueue_job(self.job_id, settings=self.context.settings)

    def _publish(self, result: ExperimentResult) -> None:
        stored = []
        for name, path in sorted(result.exports.items()):
            path = Path(path)
            if not path.is_file():
                continue
            key = f"jobs/{self.job_id}/artifacts/{path.name}"
            obj = self.context.store.put_file(key, path)
            stored.append((path.name, ARTIFACT_KINDS.get(path.suffix, "report"), obj))
            _logger.info("job %s: stored %s (%s)", self.job_id, path.name, name)
        with self.context.session() as session:
            for name, kind, obj in stored:
                jobs.add_artifact(
                    session=session, job_id=self.job_id, name=name, kind=kind, size=obj.size,
                    sha256=obj.sha256, storage_key=obj.key,
                )
            jobs.finish(
                session=session, job_id=self.job_id, status=JobStatus.SUCCEEDED, summary=metrics_summary(result)
            )
        shutil.rmtree(self.work_dir, ignore_errors=True)


def run_job(job_id: str, *, context: WorkerContext | None = None) -> None:
    """Run (or resume) a job; safe to call twice for the same message."""
    context = context or get_context()
    with context.session() as session:
        job = jobs.claim_job(session=session, job_id=job_id, worker=context.hostname)
        if job is None:
            return
        session.expunge(job)
    attempt = job.attempt
    try:
        JobRun(context, job).run()
    except BaseException as exc:
        _handle_failure(context, job_id, attempt, exc)
        if not isinstance(exc, Exception):
            raise


def _handle_failure(context: WorkerContext, job_id: str, attempt: int, exc: BaseException) -> None:
    """Fail with reason user, or requeue with backoff (reason infra once attempts run out)."""
    detail = f"{type(exc).__name__}: {exc}"
    if not isinstance(exc, Exception):  # KeyboardInterrupt / SystemExit: the sweeper will requeue it
        _logger.warning("job %s: worker interrupted (%s)", job_id, detail)
        return
    try:
        with context.session() as session:
            job = jobs.get_job(session=session, job_id=job_id)
            if job.status not in (JobStatus.RUNNING.value, JobStatus.CANCELLING.value) or job.attempt != attempt:
                return
            if is_transient(exc):
                jobs.record_event(session=session, job_id=job_id, message=f"infrastructure error: {detail}")
                if job.status == JobStatus.CANCELLING.value:
                    jobs.finish(session=session, job_id=job_id, status=JobStatus.CANCELLED, detail="cancelled")
                    return
                if attempt >= job.max_attempts:
                    # Keep the real cause: "worker lost" (requeue_stale's wording) would hide it.
                    jobs.finish(
                        session=session, job_id=job_id, status=JobStatus.FAILED, reason="infra",
                        detail=f"{detail} (attempt {attempt} of {job.max_attempts}; no attempts left)",
                    )
                    return
                delay = BackoffPolicy().delay(attempt)
                jobs.transition(
                    session=session, job_id=job_id, to=JobStatus.QUEUED, expected_from=JobStatus.RUNNING,
                    message=f"requeued after attempt {attempt}/{job.max_attempts}; retry in {delay:.0f} s",
                    values={"heartbeat_at": None, "phase": None, "eta_s": None},
                )
            else:
                _logger.info("job %s failed on user input: %s", job_id, detail)
                reason = "user" if isinstance(exc, USER_ERRORS) else "infra"
                jobs.finish(session=session, job_id=job_id, status=JobStatus.FAILED, reason=reason, detail=detail)
                return
    except Exception:  # the database itself is down: the sweeper requeues the job once it is back
        _logger.exception("job %s: could not record the failure %s", job_id, detail)
        return
    _logger.warning("job %s: transient error (%s); retrying in %.1f s", job_id, detail, delay)
    enqueue_job(job_id, settings=context.settings, countdown=delay)


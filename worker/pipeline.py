"""Run one stored job through gkd_core: the one place where the service meets the ML library.

The database is the source of truth. A task claims the job with a compare-and-set (a redelivered
message for a running or finished job does nothing), checks that this worker can give it the ranks
it asks for (``resources.gpus``), pulls the resume state of earlier attempts from storage, resolves
datasets and weights, and starts the training as its own process group (``worker/launcher.py``:
one rank, or torchrun with N). Rank 0's reports become progress rows and checkpoint pushes; the task
keeps the heartbeat, turns cancel, warm shutdown and the runtime limit into a stop file, then
uploads the exports as artifacts and ends the job. Storage and database steps wait out an outage in
place (worker/outage.py) without spending an attempt. Failures are told apart (worker/attempts.py):
bad input found late fails with reason "user"; a rank that dies requeues the job with backoff until
max_attempts (the next attempt resumes from the last stored checkpoint), then fails with reason
"infra", as does an outage longer than ``outage_window_s``.
"""

from __future__ import annotations

import functools
import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

import gkd_catalog
from gkd_core.engine.tensorboard import TensorBoardCallbacks
from gkd_core.errors import DatasetError
from gkd_core.experiment import DatasetSplit
from service import capacity as worker_slots
from service import jobs, team_limits
from service.datasets import find_dataset
from service.models import Dataset, DatasetStatus, Job, JobEvent, JobStatus, utcnow
from service.queue import enqueue_job
from service.schemas import DataRef, JobSpec
from service.training_logs import LOG_MAX_BYTES, log_key, read_tail
from service.uris import UriResolver
from worker import attempts, capacity, launcher, shutdown
from worker.context import WorkerContext, get_context
from worker.heartbeat import Heartbeat
from worker.outage import OutageWindow
from worker.parity import parity_warnings
from worker.progress import JobCallbacks
from worker.reports import ControlDir, encode_split, split_key
from worker.retry import SpecUnreadable
from worker.spec_convert import local_split, to_experiment_config
from worker.work_dir_sync import WorkDirSync

ACTIVE = (JobStatus.RUNNING.value, JobStatus.CANCELLING.value)  # an attempt may record its results only then

_logger = logging.getLogger(__name__)

EVAL_SPLIT = "val"
RUNTIME_LIMIT = "runtime limit"
HAND_BACK_DELAY_S = 10.0  # a job too big for this worker goes back to its queue after this long
TENSORBOARD_DIR = "tensorboard"
ARTIFACT_KINDS = {".safetensors": "student", ".onnx": "onnx", ".json": "model_card", ".md": "model_card"}
REPORT_FILES = frozenset({"report.json", "report.png"})  # the robustness report (gkd_core.robustness)


def _phases(spec: JobSpec) -> list[str]:
    return gkd_catalog.job_phases(gkd_catalog.method(spec.method).stages, bool(spec.references))


def device() -> str:
    """Where follow-up evaluations run in this process: the GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def usable_dataset(session: Session, team_id: str, name: str) -> Dataset:
    """The team's dataset, if its latest registration validated it: a set registered again after the job
    was accepted is read as it is now, so one being validated again or found invalid stops the job."""
    dataset = find_dataset(session=session, team_id=team_id, name=name)
    if dataset is None:
        raise DatasetError(f"dataset {name!r} was deleted after this was submitted; register it again and resubmit")
    if dataset.status != DatasetStatus.VALID.value:
        state = "is being validated again" if dataset.status == DatasetStatus.VALIDATING.value else "is now invalid"
        raise DatasetError(
            f"dataset {name!r} {state} (registered again after this was submitted); submit again once it is valid"
        )
    return dataset


def resolve_split(
    context: WorkerContext,
    resolver: UriResolver,
    team_id: str,
    ref: DataRef,
    on_file: Callable[[], None] | None = None,
) -> DatasetSplit:
    """A team's registered dataset split as a gkd_core DatasetSplit over a local folder (fetched if remote;
    ``on_file`` is called before each object is downloaded and may raise to stop)."""
    with context.session() as session:
        dataset = usable_dataset(session, team_id, ref.dataset)
        uri, layout, options = dataset.uri, dataset.layout, dict(dataset.options or {})
    return local_split(resolver.resolve(uri, on_file=on_file), layout, ref, options)


def readable_spec(job: Job) -> JobSpec:
    """The job's stored spec, or SpecUnreadable naming what this worker's version refuses in it."""
    try:
        return JobSpec.model_validate(job.spec)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ())) or "spec"
        raise SpecUnreadable(
            f"this worker cannot read job {job.id}'s spec ({where}: {first.get('msg')}); the API that accepted it "
            "runs another release: upgrade the workers to the API's version"
        ) from exc


class AttemptStopped(Exception):
    """Asked to stop (cancel, superseded, worker shutting down) before training started."""


def running_seconds(events: Sequence[JobEvent], now: datetime) -> float:
    """Seconds the job has spent running over all its attempts (the current one up to ``now``)."""
    total, since = 0.0, None
    active = (JobStatus.RUNNING.value, JobStatus.CANCELLING.value)
    for event in events:
        if event.to_status == JobStatus.RUNNING.value and since is None:
            since = event.time
        elif since is not None and event.from_status in active and event.to_status not in active:
            total += (event.time - since).total_seconds()
            since = None
    if since is not None:
        total += (now - since).total_seconds()
    return total


class JobRun:
    """One attempt at one job."""

    def __init__(self, context: WorkerContext, job: Job, worker: str | None = None) -> None:
        self.context = context
        self.worker = worker or context.hostname
        self.job_id = job.id
        self.team_id = job.team_id
        self.queue = job.queue
        self.attempt = job.attempt
        self.spec = readable_spec(job)
        self.work_dir = context.scratch / job.id
        self.control = ControlDir(context.scratch / f"{job.id}.control")
        self.sync = WorkDirSync(context.store, job.id, self.work_dir)
        self.resolver = context.resolver(team_id=job.team_id)
        self.deadline = float("inf")
        self.outage = OutageWindow.from_settings(context.settings, on_wait=lambda text: self.event(text, "outage"))
        # Set by a heartbeat that finds the job cancelled or taken over; the heartbeat runs from the claim to
        # the end (downloads of big s3:// sets included), so a live attempt is never swept as dead.
        self.stop = threading.Event()
        self.callbacks: JobCallbacks | None = None

    def event(self, message: str, type: str = "info") -> None:
        with self.context.session() as session:
            jobs.record_event(session=session, job_id=self.job_id, message=message, type=type)

    def dataset_ref(self, ref: DataRef) -> DatasetSplit:
        return resolve_split(self.context, self.resolver, self.team_id, ref, on_file=self._check_stop)

    def _check_stop(self) -> None:
        if self.stop.is_set() or shutdown.requested():
            raise AttemptStopped(f"job {self.job_id}: attempt {self.attempt} asked to stop while preparing")

    def source_eval_ref(self) -> DatasetSplit | None:
        """The source's held-out split for the in-domain row: "val" when the dataset has one."""
        source = self.spec.source
        with self.context.session() as session:
            splits = (usable_dataset(session, self.team_id, source.dataset).report or {}).get("splits", {})
        if source.split == EVAL_SPLIT or EVAL_SPLIT not in splits:
            return None
        return self.dataset_ref(DataRef(dataset=source.dataset, split=EVAL_SPLIT))

    def resolve_weights(self, uri: str) -> str:
        return str(self.resolver.resolve(uri, on_file=self._check_stop))

    def prepare(self) -> None:
        """Start from clean local folders, the work folder filled with the stored resume state, if any."""
        shutil.rmtree(self.work_dir, ignore_errors=True)
        shutil.rmtree(self.control.path, ignore_errors=True)
        self.work_dir.mkdir(parents=True)
        self.control.path.mkdir(parents=True)
        pulled = self.outage.call("pulling the resume state from storage", self.sync.pull)
        if pulled:
            self.event(f"attempt {self.attempt}: restored {pulled} resume files from storage")

    def _prepared_dir(self) -> str | None:
        settings = self.context.settings
        return str(Path(settings.data_dir).resolve() / "prepared") if settings.prepared_datasets else None

    def launch_file(self, device_kind: str) -> dict[str, Any]:
        """What the ranks run: the spec with its datasets and weights resolved here, once, for all of them.

        Building the ExperimentConfig here also checks it before any rank starts.
        """
        datasets: dict[str, dict[str, Any]] = {}
        weights: dict[str, str] = {}

        def dataset_ref(ref: DataRef) -> DatasetSplit:
            split = self.dataset_ref(ref)
            datasets[split_key(ref)] = encode_split(split)
            return split

        def resolve_weights(uri: str) -> str:
            weights[uri] = self.resolve_weights(uri)
            return weights[uri]

        source_eval = self.source_eval_ref()
        to_experiment_config(
            self.spec, dataset_ref=dataset_ref, resolve_weights=resolve_weights, device=device_kind,
            source_eval=source_eval,
        )  # fmt: skip
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "spec": self.spec.model_dump(mode="json"),
            "datasets": datasets,
            "weights": weights,
            "source_eval": encode_split(source_eval) if source_eval is not None else None,
            "work_dir": str(self.work_dir),
            "device": device_kind,
            # Decoded-once dataset stores live beside the dataset cache (gkd_core.data.prepared).
            "prepared_dir": self._prepared_dir(),
            # GKD_SPEED of this worker, over the speed defaults measured for the device (gkd_core.engine.speed)
            "speed": self.context.settings.speed_overrides,
        }

    def run(self) -> None:
        settings = self.context.settings
        ranks = self.spec.resources.gpus
        slots = capacity.local_slots(settings)
        if ranks > slots.count:
            self._too_big(ranks, slots)
            return
        limit = self.spec.resources.max_runtime_s
        used = self._running_seconds()
        if used >= limit:
            self._out_of_time(used)
            return
        self.deadline = time.monotonic() + (limit - used)
        beat = Heartbeat(self._beat, interval_s=settings.heartbeat_interval_s, name=self.job_id)
        with beat:
            try:
                self.prepare()
                launch = self.outage.call("resolving datasets and weights", lambda: self.launch_file(slots.kind))
            except AttemptStopped:
                self._stopped()
                return
            self._train(launch, ranks, slots.kind)

    def _train(self, launch: dict[str, Any], ranks: int, device_kind: str) -> None:
        settings = self.context.settings
        self.control.write_json(self.control.launch_file, launch)
        tensorboard = TensorBoardCallbacks(self.work_dir / TENSORBOARD_DIR)
        callbacks = JobCallbacks(
            self.context, self.job_id, self.sync, _phases(self.spec), metric_log=tensorboard, outage=self.outage
        )
        self.callbacks = callbacks
        if self.stop.is_set():
            callbacks.request_stop()
        self.event(f"attempt {self.attempt}: training on {launcher.describe_launch(ranks, device_kind)}")
        try:
            result = launcher.run_ranks(
                self.control, nproc=ranks, device_kind=device_kind, callbacks=callbacks,
                stop_reason=lambda: self._stop_reason(callbacks), grace_s=settings.stop_grace_s,
                nice=settings.rank_nice,
            )  # fmt: skip
        finally:
            self._store_log()
        callbacks.flush()
        tensorboard.close()
        if not self._owns_job():  # swept as dead meanwhile: the attempt that owns it now writes the job's files
            _logger.warning("job %s: attempt %d no longer owns the job; nothing stored", self.job_id, self.attempt)
            return
        self.outage.call("storing the last checkpoint", self.sync.push)
        if result.stopped and result.stop_reason == RUNTIME_LIMIT:
            self._out_of_time(self._running_seconds(), forced=result.forced)
        elif result.stopped:
            self._stopped()
        else:
            self._publish(result.exports, result.summary)

    def _owns_job(self) -> bool:
        """This attempt still owns the job (the same attempt number, running or cancelling)."""
        with self.context.session() as session:
            job = jobs.get_job(session=session, job_id=self.job_id)
            return job.attempt == self.attempt and job.status in ACTIVE

    def _store_log(self) -> None:
        """Keep this attempt's training output (the ranks' log, tracebacks included) where the user can read
        it (GET /v1/jobs/{id}/logs): the work folder it is written to does not outlive the attempt."""
        path = self.control.path / launcher.RANKS_LOG
        if not path.is_file():
            return
        try:
            self.context.store.put_bytes(log_key(self.job_id, self.attempt), read_tail(path, LOG_MAX_BYTES))
        except Exception:  # never hide the attempt's own outcome behind a failed upload
            _logger.exception("job %s: could not store the log of attempt %d", self.job_id, self.attempt)

    def _stop_reason(self, callbacks: JobCallbacks) -> str | None:
        if callbacks.should_stop():
            return "handoff" if shutdown.requested() else "cancel or superseded attempt"
        if time.monotonic() >= self.deadline:
            return RUNTIME_LIMIT
        return None

    def _running_seconds(self) -> float:
        with self.context.session() as session:
            return running_seconds(jobs.list_events(session=session, job_id=self.job_id), utcnow())

    def _out_of_time(self, used: float, *, forced: bool = False) -> None:
        """Past resources.max_runtime_s: the last checkpoint is stored; the job fails, naming the limit."""
        limit = self.spec.resources.max_runtime_s
        how = (
            "training did not stop in time and was terminated; its last checkpoint is stored" if forced
            else "training stopped after a checkpoint, which is stored"
        )  # fmt: skip
        detail = (
            f"resources.max_runtime_s={limit} reached: the job has run {used:.0f} s over all its attempts; "
            f"{how}. Raise max_runtime_s to give such a job more time"
        )
        with self.context.session() as session:
            job = jobs.get_job(session=session, job_id=self.job_id)
            if job.attempt == self.attempt and job.status == JobStatus.RUNNING.value:
                jobs.finish(session=session, job_id=self.job_id, status=JobStatus.FAILED, reason="user", detail=detail)
            elif job.attempt == self.attempt and job.status == JobStatus.CANCELLING.value:
                jobs.finish(session=session, job_id=self.job_id, status=JobStatus.CANCELLED, detail="cancelled")

    def _too_big(self, ranks: int, slots: capacity.Slots) -> None:
        """This worker cannot give the job its ranks: hand it back when a live worker of the queue can,
        else fail it, naming what the queues' workers hold."""
        here = f"the worker that took it from queue {self.queue!r} ({self.worker}) runs at most "
        here += f"{slots.describe()} per job"
        with self.context.session() as session:
            live = worker_slots.live_slots(session=session, stale_s=self.context.settings.capacity_stale_s)
            bigger = [row.worker for row in live.get(self.queue, []) if row.slots >= ranks]
            if bigger:
                jobs.LIFECYCLE.requeue(
                    session=session, row_id=self.job_id, spend_attempt=False,
                    message=f"resources.gpus={ranks}: {here}; handed back for {', '.join(bigger)}",
                )  # fmt: skip
            else:
                live_text = worker_slots.describe(live) or "none"
                detail = (
                    f"resources.gpus={ranks}, but {here}, and no live worker of the queue holds more "
                    f"(live workers per queue: {live_text}); resubmit with gpus <= {slots.count} or to a "
                    f"queue whose workers hold {ranks}"
                )
                jobs.finish(session=session, job_id=self.job_id, status=JobStatus.FAILED, reason="user", detail=detail)
        if bigger:
            enqueue_job(self.job_id, queue=self.queue, settings=self.context.settings, countdown=HAND_BACK_DELAY_S)

    def _beat(self) -> None:
        with self.context.session() as session:
            stop = jobs.heartbeat(session=session, job_id=self.job_id, attempt=self.attempt)
        if stop:
            self.stop.set()
            if self.callbacks is not None:
                self.callbacks.request_stop()

    def _stopped(self) -> None:
        """The loop stopped on request: cancelled, the worker is shutting down, or the job moved on."""
        requeued = False
        with self.context.session() as session:
            job = jobs.get_job(session=session, job_id=self.job_id)
            ours = job.attempt == self.attempt
            if job.status == JobStatus.CANCELLING.value and ours:
                jobs.finish(session=session, job_id=self.job_id, status=JobStatus.CANCELLED, detail="cancelled")
            elif job.status == JobStatus.RUNNING.value and ours and shutdown.requested():
                # The attempt is given back, so a rolling restart never exhausts max_attempts.
                jobs.LIFECYCLE.requeue(
                    session=session, row_id=self.job_id, spend_attempt=False,
                    message=f"worker {self.worker} shutting down: checkpoint stored, requeued after attempt "
                    f"{self.attempt} (a handoff does not use up an attempt)",
                )  # fmt: skip
                requeued = True
            else:
                _logger.warning("job %s: attempt %d no longer owns the job; stopping", self.job_id, self.attempt)
        if requeued:
            enqueue_job(self.job_id, queue=self.queue, settings=self.context.settings)

    def _publish(self, exports: dict[str, Path], summary: dict[str, Any]) -> None:
        logs = self.work_dir / TENSORBOARD_DIR
        if logs.is_dir():  # the loss curves as TensorBoard event files, one folder per stage, in one archive
            archive = shutil.make_archive(str(self.work_dir / "tensorboard"), "gztar", root_dir=logs)
            exports = {**exports, "tensorboard": Path(archive)}
        stored = []
        for name, path in sorted(exports.items()):
            path = Path(path)
            if not path.is_file():
                continue
            key = f"jobs/{self.job_id}/artifacts/{path.name}"
            obj = self.outage.call(f"storing {path.name}", functools.partial(self.context.store.put_file, key, path))
            kind = "report" if path.name in REPORT_FILES else ARTIFACT_KINDS.get(path.suffix, "report")
            stored.append((path.name, kind, obj))
            _logger.info("job %s: stored %s (%s)", self.job_id, path.name, name)

        def record() -> None:  # artifacts are listed only once every one is stored, with the job's success
            with self.context.session() as session:
                job = jobs.get_job(session=session, job_id=self.job_id)
                if job.attempt != self.attempt or job.status not in ACTIVE:
                    _logger.warning(
                        "job %s: attempt %d finished but no longer owns the job (attempt %d, %s); results not recorded",
                        self.job_id, self.attempt, job.attempt, job.status,
                    )  # fmt: skip
                    return
                for name, kind, obj in stored:
                    jobs.add_artifact(
                        session=session, job_id=self.job_id, name=name, kind=kind, size=obj.size,
                        sha256=obj.sha256, storage_key=obj.key,
                    )  # fmt: skip
                for message in parity_warnings(summary):  # a shipped file that scores unlike PyTorch is news
                    jobs.record_event(session=session, job_id=self.job_id, message=message, type="parity")
                if job.status == JobStatus.CANCELLING.value:
                    # The cancel came after training had finished: honour it, and keep what was stored.
                    jobs.finish(
                        session=session, job_id=self.job_id, status=JobStatus.CANCELLED,
                        detail="cancelled after training had finished; its artifacts and results are kept",
                        summary=summary,
                    )  # fmt: skip
                    return
                jobs.finish(session=session, job_id=self.job_id, status=JobStatus.SUCCEEDED, summary=summary)

        self.outage.call("recording the results", record)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        shutil.rmtree(self.control.path, ignore_errors=True)


def run_job(job_id: str, *, context: WorkerContext | None = None, worker: str | None = None) -> None:
    """Run (or resume) a job; safe to call twice for the same message.

    ``worker`` is this worker's Celery node name (``celery@host``, or the ``-n`` name), which the
    job's events record; it defaults to the host name.
    """
    context = context or get_context()
    worker = worker or context.hostname
    limits = team_limits.TeamLimits.from_settings(context.settings)
    with context.session() as session:
        job = jobs.claim_job(session=session, job_id=job_id, worker=worker, limits=limits)
        if job is None:
            return
        session.expunge(job)
    try:
        JobRun(context, job, worker).run()
    except BaseException as exc:
        attempts.handle_failure(context, attempts.JOB, job_id, job.attempt, exc)
        if not isinstance(exc, Exception):
            raise
    _start_waiting(context, job.team_id, limits)


def _start_waiting(context: WorkerContext, team_id: str, limits: team_limits.TeamLimits) -> None:
    """This job no longer holds the team's capacity (it ended or went back to the queue): re-send the
    team's waiting jobs that fit now. Best effort: the sweeper re-sends long-queued jobs anyway."""
    if limits.unlimited:
        return
    try:
        with context.session() as session:
            ready = team_limits.startable(session=session, team_id=team_id, limits=limits)
        for waiting_id, queue in ready:
            enqueue_job(waiting_id, queue=queue, settings=context.settings)
            _logger.info("team %s: capacity freed, re-sent waiting job %s", team_id, waiting_id)
    except Exception:
        _logger.exception("team %s: could not re-send waiting jobs; the sweeper will", team_id)

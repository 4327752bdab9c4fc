"""Follow-up evaluations: a finished job's exported student, scored on more target domains, and the
files it shipped (ONNX, INT8) beside it, each domain's row with their parity as in the job's summary.

An evaluation lives the same life as a job (worker/attempts.py): claimed with attempt + 1 and the
worker's node name, kept alive by a heartbeat (a killed worker's evaluation is requeued by the
sweeper and run again; max_attempts bounds it), storage and database steps waiting out an outage,
and cancel honoured between targets. A warm shutdown of the worker hands a running evaluation back
to its queue between targets without using up an attempt, as it does a job.
"""

from __future__ import annotations

import functools
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from gkd_core.experiment import SHIPPED_FILES, evaluate_shipped, evaluate_student
from service import evaluations, jobs
from service.models import Evaluation, JobStatus
from service.schemas import TargetRef
from worker import attempts, shutdown
from worker.context import WorkerContext, get_context
from worker.heartbeat import Heartbeat
from worker.outage import OutageWindow
from worker.parity import fold_parity, parity_warnings
from worker.pipeline import device, resolve_split

_logger = logging.getLogger(__name__)
STUDENT_ARTIFACT = "student.safetensors"


def run_evaluation(evaluation_id: str, *, context: WorkerContext | None = None, worker: str | None = None) -> None:
    """Claim the evaluation (a redelivered message does nothing), score every target, store the results."""
    context = context or get_context()
    evaluation = attempts.claim(context, attempts.EVALUATION, evaluation_id, worker or context.hostname)
    if evaluation is None:
        return
    try:
        EvaluationRun(context, evaluation).run()
    except BaseException as exc:
        attempts.handle_failure(context, attempts.EVALUATION, evaluation_id, evaluation.attempt, exc)
        if not isinstance(exc, Exception):
            raise


class EvaluationRun:
    """One attempt at one evaluation."""

    def __init__(self, context: WorkerContext, evaluation: Evaluation) -> None:
        self.context = context
        self.id = evaluation.id
        self.attempt = evaluation.attempt
        self.job_id = evaluation.job_id
        self.team_id = evaluation.team_id
        self.targets = [TargetRef.model_validate(raw) for raw in evaluation.targets]
        self.outage = OutageWindow.from_settings(context.settings)
        self.stop = threading.Event()
        self.folder = context.scratch / f"eval-{evaluation.id}"

    def run(self) -> None:
        settings = self.context.settings
        beat = Heartbeat(self._beat, interval_s=settings.heartbeat_interval_s, name=f"eval-{self.id}")
        with beat:
            results = self._score()
        shutil.rmtree(self.folder, ignore_errors=True)
        if results is None:
            self._stopped()
            return

        def record() -> None:
            with self.context.session() as session:
                if evaluations.get_evaluation(session=session, evaluation_id=self.id).status == "cancelling":
                    # The cancel came after the last target was scored: honour it, as the user asked.
                    evaluations.finish_evaluation(session=session, evaluation_id=self.id, status=JobStatus.CANCELLED)
                    return
                evaluations.finish_evaluation(
                    session=session, evaluation_id=self.id, status=JobStatus.SUCCEEDED, results=results
                )

        self.outage.call("recording the results", record)
        _logger.info("evaluation %s done: %s", self.id, {d: r.get("miou") for d, r in results.items()})

    def _score(self) -> dict[str, Any] | None:
        """Per-domain results, or None when asked to stop (checked between targets).

        Each domain's row is the PyTorch student's metrics plus, for every file the job shipped (ONNX, its
        INT8 version), that file's mIoU there and its difference from PyTorch's, as in the job's summary.
        """
        local = self._download(STUDENT_ARTIFACT)
        shipped = {kind: self._download(name) for kind, name in self._shipped().items()}
        resolver = self.context.resolver(team_id=self.team_id)
        results: dict[str, Any] = {}
        for target in self.targets:
            if self.stop.is_set() or shutdown.requested():
                return None
            split = self.outage.call(
                f"resolving {target.dataset}/{target.split}",
                functools.partial(resolve_split, self.context, resolver, self.team_id, target),
            )
            metrics = evaluate_student(local, [split], device=device())
            rows = {domain: m.to_dict() for domain, m in metrics.items()}
            deployed = evaluate_shipped(local, shipped, [split], device=device()) if shipped else {}
            fold_parity(rows, {kind: {d: m.to_dict() for d, m in per.items()} for kind, per in deployed.items()})
            for message in parity_warnings({"student": rows, "deployed": deployed}):
                _logger.warning("evaluation %s: %s", self.id, message)
            results.update(rows)
        return results

    def _shipped(self) -> dict[str, str]:
        """The deployable files this job shipped, by kind (jobs exported without ONNX have none)."""

        def names() -> set[str]:
            with self.context.session() as session:
                return {a.name for a in jobs.list_artifacts(session=session, job_id=self.job_id)}

        stored = self.outage.call("listing the job's files", names)
        return {kind: name for kind, name in SHIPPED_FILES.items() if name in stored}

    def _download(self, name: str) -> Path:
        """One of the job's artifacts into this attempt's scratch folder."""

        def key() -> str:
            with self.context.session() as session:
                return jobs.get_artifact(session=session, job_id=self.job_id, name=name).storage_key

        stored = self.outage.call(f"finding {name}", key)
        local = self.folder / name
        self.outage.call(f"downloading {name}", lambda: self.context.store.get_file(stored, local))
        return local

    def _beat(self) -> None:
        if attempts.beat(self.context, attempts.EVALUATION, self.id, self.attempt):
            self.stop.set()

    def _stopped(self) -> None:
        """Cancelled (it ends cancelled), the worker shutting down (handed back), or superseded by another
        attempt (that one finishes it)."""
        queue = None
        with self.context.session() as session:
            evaluation = evaluations.get_evaluation(session=session, evaluation_id=self.id)
            ours = evaluation.attempt == self.attempt
            if evaluation.status == JobStatus.CANCELLING.value and ours:
                evaluations.finish_evaluation(
                    session=session, evaluation_id=self.id, status=JobStatus.CANCELLED, error="cancelled"
                )
            elif evaluation.status == JobStatus.RUNNING.value and ours and shutdown.requested():
                evaluations.LIFECYCLE.requeue(
                    session=session, row_id=self.id, spend_attempt=False,
                    message=f"worker shutting down: requeued after attempt {self.attempt} (no attempt used up)",
                )  # fmt: skip
                queue = evaluation.queue
            else:
                _logger.warning("evaluation %s: attempt %d no longer owns it; stopping", self.id, self.attempt)
        if queue is not None:
            attempts.EVALUATION.send(self.id, queue=queue, settings=self.context.settings)

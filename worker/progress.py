"""Turn gkd_core's training callbacks into database rows: metrics, events, phase, progress, ETA.

Writes are batched (metrics) and throttled (progress) so a fast training loop does not spend its
time in the database. Cancellation reaches the loop through ``should_stop``, which reads a flag the
heartbeat thread sets from the job row. Every database write and checkpoint push goes through the
attempt's ``OutageWindow``, so a storage or database outage is waited out while the ranks train on.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import gkd_catalog
from gkd_core.engine.callbacks import Callbacks, MetricRow, Phase
from service import jobs
from worker import shutdown
from worker.context import WorkerContext
from worker.outage import OutageWindow
from worker.work_dir_sync import WorkDirSync

_logger = logging.getLogger(__name__)

# Share of the whole job each phase stands for, used to turn per-stage fractions into one number.
PHASE_WEIGHTS = {"stage1": 0.45, "stage2": 0.3, "references": 0.15, "evaluating": 0.05, "exporting": 0.05}


class JobCallbacks(Callbacks):
    """Callbacks for one attempt of one job."""

    def __init__(
        self,
        context: WorkerContext,
        job_id: str,
        sync: WorkDirSync,
        phases: list[str],
        *,
        flush_interval_s: float = 1.0,
        metric_log: Callbacks | None = None,
        outage: OutageWindow | None = None,
    ) -> None:
        self.context = context
        self.outage = outage or OutageWindow.from_settings(context.settings)
        # Every metric row also goes here (the job's TensorBoard event files), as it arrives.
        self.metric_log = metric_log
        self.job_id = job_id
        self.sync = sync
        total = sum(PHASE_WEIGHTS[p] for p in phases) or 1.0
        self.weights = {p: PHASE_WEIGHTS[p] / total for p in phases}
        self.phase: str | None = None
        self.flush_interval_s = flush_interval_s
        self._pending: list[MetricRow] = []
        self._last_flush = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- gkd_core hooks --------------------------------------------------------------------------
    def on_metrics(self, rows: list[MetricRow]) -> None:
        if self.metric_log is not None:
            self.metric_log.on_metrics(rows)
        with self._lock:
            self._pending.extend(rows)
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def on_checkpoint(self, path: Path, stage: str, step: int) -> None:
        self.flush()
        # Later checkpoints already on disk wait for their own report (their metric rows are not written yet).
        uploaded = self.outage.call(
            f"storing the {stage} checkpoint of step {step}", lambda: self.sync.push(up_to=(stage, step))
        )
        _logger.info("job %s: checkpoint %s step %d stored (%d files uploaded)", self.job_id, stage, step, uploaded)

    def on_progress(self, stage: str, fraction: float, eta_s: float | None) -> None:
        if self.phase is None:
            return
        done = sum(w for p, w in self.weights.items() if self._order(p) < self._order(self.phase))
        overall = done + self.weights.get(self.phase, 0.0) * max(0.0, min(1.0, fraction))

        def write() -> None:
            with self.context.session() as session:
                jobs.set_progress(session=session, job_id=self.job_id, progress=overall, eta_s=eta_s)

        self.outage.call("recording progress", write)

    def on_phase(self, phase: Phase) -> None:
        self.flush()
        # The phase that just ended left its state on disk (state.json): store it before moving on.
        self.outage.call(f"storing the state before phase {phase.value}", self.sync.push)
        self.phase = phase.value

        def write() -> None:
            with self.context.session() as session:
                jobs.set_phase(session=session, job_id=self.job_id, phase=phase.value)

        self.outage.call("recording the phase", write)

    def on_event(self, message: str) -> None:
        def write() -> None:
            with self.context.session() as session:
                jobs.record_event(session=session, job_id=self.job_id, message=message)

        self.outage.call("recording an event", write)

    def should_stop(self) -> bool:
        return self._stop.is_set() or shutdown.requested()

    # -- worker side ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Ask the training loop to checkpoint and stop (cancel, or the job was taken away)."""
        self._stop.set()

    def flush(self) -> None:
        """Write buffered metric rows in one insert."""
        with self._lock:
            rows, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        if rows:

            def write() -> None:  # a failed insert rolled back: writing the same rows again is safe
                with self.context.session() as session:
                    jobs.record_metrics(session=session, job_id=self.job_id, rows=rows)

            self.outage.call("recording metrics", write)

    def _order(self, phase: str) -> int:
        return gkd_catalog.PHASES.index(phase)

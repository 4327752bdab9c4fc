"""Callbacks: how a training run reports to whoever drives it (service worker, CLI, notebook).

The trainer never knows about databases or HTTP; it calls these hooks. ``Callbacks`` is a no-op
base, so an implementation overrides only what it needs. ``CompositeCallbacks`` fans out to
several, and ``RecordingCallbacks`` keeps everything in memory (tests, notebooks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricRow:
    """One scalar logged at one optimizer step.

    ``step`` counts completed optimizer steps (1-based); ``epoch`` is the data epoch the step's
    batch came from (0 when the batch source has no notion of epochs).
    """

    stage: str
    step: int
    epoch: int
    name: str
    value: float


class Phase(StrEnum):
    """The phases of an experiment, in order (gkd_catalog.PHASES lists the same names)."""

    STAGE1 = "stage1"
    STAGE2 = "stage2"
    REFERENCES = "references"
    EVALUATING = "evaluating"
    EXPORTING = "exporting"


class Callbacks:
    """No-op base for training hooks; override the methods you need.

    ``should_stop`` is polled once per optimizer step: returning True makes the trainer save a
    checkpoint and raise ``StopRequested``, so a cancellation lands within one step.
    """

    def on_metrics(self, rows: list[MetricRow]) -> None:
        """Receive the scalars of one log interval (one row per name)."""

    def on_checkpoint(self, path: Path, stage: str, step: int) -> None:
        """A complete checkpoint for ``stage`` at ``step`` now exists at ``path``."""

    def on_progress(self, stage: str, fraction: float, eta_s: float | None) -> None:
        """Progress of ``stage`` in [0, 1] and the estimated seconds left (None while unknown)."""

    def on_event(self, message: str) -> None:
        """A human-readable event (resumed, stopped, teacher alignment) for the job's timeline."""

    def on_phase(self, phase: Phase) -> None:
        """The experiment entered ``phase`` (the previous phase's state is on disk by now)."""

    def should_stop(self) -> bool:
        """Return True to stop the run after saving a checkpoint."""
        return False


class CompositeCallbacks(Callbacks):
    """Forward every hook to several callbacks in order; stop when any of them asks to."""

    def __init__(self, *children: Callbacks) -> None:
        self.children: list[Callbacks] = list(children)

    def on_metrics(self, rows: list[MetricRow]) -> None:
        for child in self.children:
            child.on_metrics(rows)

    def on_checkpoint(self, path: Path, stage: str, step: int) -> None:
        for child in self.children:
            child.on_checkpoint(path, stage, step)

    def on_progress(self, stage: str, fraction: float, eta_s: float | None) -> None:
        for child in self.children:
            child.on_progress(stage, fraction, eta_s)

    def on_event(self, message: str) -> None:
        for child in self.children:
            child.on_event(message)

    def on_phase(self, phase: Phase) -> None:
        for child in self.children:
            child.on_phase(phase)

    def should_stop(self) -> bool:
        # Poll every child (not any() with short-circuit) so each sees the same poll cadence.
        answers = [child.should_stop() for child in self.children]
        return any(answers)


@dataclass
class RecordingCallbacks(Callbacks):
    """Keep every hook call in memory; ``stop_at_step`` asks to stop once that step is done."""

    stop_at_step: int | None = None
    metrics: list[MetricRow] = field(default_factory=list)
    checkpoints: list[tuple[Path, str, int]] = field(default_factory=list)
    progress: list[tuple[str, float, float | None]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    phases: list[Phase] = field(default_factory=list)
    polls: int = 0

    def on_metrics(self, rows: list[MetricRow]) -> None:
        self.metrics.extend(rows)

    def on_checkpoint(self, path: Path, stage: str, step: int) -> None:
        self.checkpoints.append((path, stage, step))

    def on_progress(self, stage: str, fraction: float, eta_s: float | None) -> None:
        self.progress.append((stage, fraction, eta_s))

    def on_event(self, message: str) -> None:
        self.events.append(message)

    def on_phase(self, phase: Phase) -> None:
        self.phases.append(phase)

    def should_stop(self) -> bool:
        self.polls += 1
        if self.stop_at_step is None:
            return False
        done = max((row.step for row in self.metrics), default=0)
        return done >= self.stop_at_step

    def values(self, name: str, stage: str | None = None) -> dict[int, float]:
        """Map step -> value of one metric (the last row wins when a step was logged twice)."""
        return {r.step: r.value for r in self.metrics if r.name == name and (stage is None or r.stage == stage)}


class LoggingCallbacks(Callbacks):
    """Send events and metrics to the standard ``logging`` module (handy in notebooks and CLIs)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or _logger

    def on_metrics(self, rows: list[MetricRow]) -> None:
        if rows:
            parts = " ".join(f"{r.name}={r.value:.4g}" for r in rows)
            self.logger.info("%s step %d: %s", rows[0].stage, rows[0].step, parts)

    def on_event(self, message: str) -> None:
        self.logger.info("%s", message)

    def on_phase(self, phase: Phase) -> None:
        self.logger.info("phase: %s", phase.value)

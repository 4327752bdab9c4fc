"""The folder through which a job's training processes and its Celery task talk (one per attempt).

The task (the control plane) writes ``launch.json`` and starts the ranks; rank 0 appends its
callbacks to ``reports.jsonl``, one JSON object a line, which the task tails and feeds to the
job's ``JobCallbacks`` (database rows, checkpoint pushes); the task asks every rank to stop by
writing ``stop`` (its content is the reason); each rank writes ``outcome-<rank>.json`` as it ends.
Files rather than pipes: a slow database or upload on the task's side never blocks a training
step, and nothing is lost when the task reads late.

::

    <scratch>/<job id>.control/
      launch.json           what to run: the spec, resolved datasets and weights, work dir, device kind
      reports.jsonl         rank 0: metrics, progress, events, phases, checkpoints
      stop                  present = stop at the next step (checkpoint first); holds the reason
      outcome-<rank>.json   ok (rank 0 adds the summary and export paths), stopped, or error
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from gkd_core.engine.callbacks import Callbacks, MetricRow, Phase

_logger = logging.getLogger(__name__)

LAUNCH = "launch.json"
REPORTS = "reports.jsonl"
STOP = "stop"


class ControlDir:
    """Paths and small atomic reads and writes of one attempt's control folder."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    def launch_file(self) -> Path:
        return self.path / LAUNCH

    @property
    def reports_file(self) -> Path:
        return self.path / REPORTS

    @property
    def stop_file(self) -> Path:
        return self.path / STOP

    def outcome_file(self, rank: int) -> Path:
        return self.path / f"outcome-{rank}.json"

    def write_json(self, path: Path, data: Any) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)

    def read_launch(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.launch_file.read_text())
        return data

    def request_stop(self, reason: str) -> None:
        """Ask every rank to checkpoint and stop; the first reason given is kept."""
        if not self.stop_file.exists():
            self.write_json(self.stop_file, {"reason": reason})

    def stop_requested(self) -> bool:
        return self.stop_file.exists()

    def write_outcome(self, rank: int, outcome: dict[str, Any]) -> None:
        self.write_json(self.outcome_file(rank), outcome)

    def outcomes(self) -> dict[int, dict[str, Any]]:
        """Every outcome written so far, by rank (unreadable ones are skipped with a warning)."""
        found: dict[int, dict[str, Any]] = {}
        for path in self.path.glob("outcome-*.json"):
            try:
                found[int(path.stem.removeprefix("outcome-"))] = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                _logger.warning("unreadable rank outcome %s: %s", path, exc)
        return found


class StopFileCallbacks(Callbacks):
    """What every rank but 0 needs: ``should_stop`` reads the stop file (one stat per step)."""

    def __init__(self, control: ControlDir) -> None:
        self.control = control

    def should_stop(self) -> bool:
        return self.control.stop_requested()


class ReportingCallbacks(StopFileCallbacks):
    """Rank 0's callbacks: every hook becomes one appended line of ``reports.jsonl``."""

    def __init__(self, control: ControlDir) -> None:
        super().__init__(control)
        self._out = control.reports_file.open("a", encoding="utf-8")

    def _write(self, **message: Any) -> None:
        self._out.write(json.dumps(message) + "\n")
        self._out.flush()

    def on_metrics(self, rows: list[MetricRow]) -> None:
        self._write(kind="metrics", rows=[[r.stage, r.step, r.epoch, r.name, r.value] for r in rows])

    def on_checkpoint(self, path: Path, stage: str, step: int) -> None:
        self._write(kind="checkpoint", path=str(path), stage=stage, step=step)

    def on_progress(self, stage: str, fraction: float, eta_s: float | None) -> None:
        self._write(kind="progress", stage=stage, fraction=fraction, eta_s=eta_s)

    def on_event(self, message: str) -> None:
        self._write(kind="event", message=message)

    def on_phase(self, phase: Phase) -> None:
        self._write(kind="phase", phase=phase.value)

    def close(self) -> None:
        self._out.close()


class ReportReader:
    """The task's side: read the lines rank 0 appended since the last call and replay them."""

    def __init__(self, control: ControlDir, callbacks: Callbacks) -> None:
        self.control = control
        self.callbacks = callbacks
        self._offset = 0

    def drain(self) -> int:
        """Replay every complete new line into the callbacks; return how many were replayed."""
        try:
            with self.control.reports_file.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return 0
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next call
        self._offset += end
        lines = data[:end].splitlines()
        for line in lines:
            self._replay(json.loads(line))
        return len(lines)

    def _replay(self, message: dict[str, Any]) -> None:
        kind = message["kind"]
        cb = self.callbacks
        if kind == "metrics":
            cb.on_metrics([MetricRow(stage, int(step), int(epoch), name, float(v)) for stage, step, epoch, name, v
                           in message["rows"]])  # fmt: skip
        elif kind == "checkpoint":
            cb.on_checkpoint(Path(message["path"]), message["stage"], int(message["step"]))
        elif kind == "progress":
            cb.on_progress(message["stage"], float(message["fraction"]), message["eta_s"])
        elif kind == "event":
            cb.on_event(message["message"])
        elif kind == "phase":
            cb.on_phase(Phase(message["phase"]))
        else:
            _logger.warning("unknown report %r from rank 0", kind)


def encode_split(split: Any) -> dict[str, Any]:
    """A gkd_core DatasetSplit as launch-file JSON."""
    return {"root": str(split.root), "layout": split.layout, "split": split.split, "name": split.name,
            "options": dict(split.options), "resize": list(split.resize) if split.resize else None,
            "group": split.group}  # fmt: skip


def decode_split(data: dict[str, Any]) -> Any:
    """The DatasetSplit ``encode_split`` wrote."""
    from gkd_core.experiment import DatasetSplit

    resize = data.get("resize")
    return DatasetSplit(root=Path(data["root"]), layout=data["layout"], split=data["split"], name=data["name"],
                        options=dict(data.get("options") or {}), group=data.get("group"),
                        resize=(int(resize[0]), int(resize[1])) if resize else None)  # fmt: skip


def split_key(ref: Any) -> str:
    """How the launch file names a JobSpec DataRef: ``dataset/split``."""
    return f"{ref.dataset}/{ref.split}"

"""TensorBoardCallbacks: metric rows become TensorBoard scalars, read back through tensorboardX's own records.

The event files are TFRecords of ``Event`` protos; they are read here with tensorboardX's proto classes and
its masked CRC-32C (every record's checksums are verified), the same framing TensorBoard reads.
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gkd_core.engine import MetricRow, RecordingCallbacks, fit
from gkd_core.engine.callbacks import CompositeCallbacks, Phase

tensorboardX = pytest.importorskip("tensorboardX")

from gkd_core.engine.tensorboard import TensorBoardCallbacks  # noqa: E402
from tests.gkd_core.engine._toy import make_run  # noqa: E402


def read_records(path: Path) -> list[Any]:
    """Every Event in one event file, each record's length and data CRCs checked."""
    from tensorboardX.proto.event_pb2 import Event
    from tensorboardX.record_writer import masked_crc32c

    events = []
    data = path.read_bytes()
    offset = 0
    while offset < len(data):
        header = data[offset : offset + 8]
        (length,) = struct.unpack("Q", header)
        (header_crc,) = struct.unpack("I", data[offset + 8 : offset + 12])
        assert header_crc == masked_crc32c(header), f"{path}: bad length CRC at {offset}"
        body = data[offset + 12 : offset + 12 + length]
        (body_crc,) = struct.unpack("I", data[offset + 12 + length : offset + 16 + length])
        assert body_crc == masked_crc32c(body), f"{path}: bad data CRC at {offset}"
        event = Event()
        event.ParseFromString(body)
        events.append(event)
        offset += 16 + length
    return events


def scalars(folder: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} over a run folder's event files in order, as TensorBoard shows them.

    A ``SessionLog.START`` at step N (tensorboardX's ``purge_step``) hides earlier events at steps >= N.
    """
    from tensorboardX.proto.event_pb2 import SessionLog

    series: dict[str, dict[int, float]] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in read_records(path):
            if event.HasField("session_log") and event.session_log.status == SessionLog.START:
                for values in series.values():
                    for step in [s for s in values if s >= event.step]:
                        del values[step]
            for value in event.summary.value:
                series.setdefault(value.tag, {})[event.step] = value.simple_value
    return series


def _rows(stage: str, steps: range, scale: float = 1.0) -> list[MetricRow]:
    return [
        MetricRow(stage, step, 0, name, scale * (1.0 / step + offset))
        for step in steps
        for name, offset in (("loss", 0.0), ("loss_cls", 0.5))
    ]


def test_rows_become_stage_name_scalars_at_their_steps(tmp_path: Path) -> None:
    written = _rows("stage1", range(1, 6)) + _rows("stage2", range(1, 4), scale=2.0)
    with TensorBoardCallbacks(tmp_path) as tb:
        tb.on_metrics(written[:4])
        tb.on_phase(Phase.STAGE1)
        tb.on_metrics(written[4:])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage1", "stage2"]
    stage1, stage2 = scalars(tmp_path / "stage1"), scalars(tmp_path / "stage2")
    assert set(stage1) == {"stage1/loss", "stage1/loss_cls"} and set(stage2) == {"stage2/loss", "stage2/loss_cls"}
    for row in written:
        got = (stage1 if row.stage == "stage1" else stage2)[f"{row.stage}/{row.name}"][row.step]
        assert math.isclose(got, row.value, rel_tol=1e-6)  # stored as float32
    assert sorted(stage2["stage2/loss"]) == [1, 2, 3]


def test_a_resumed_stage_hides_what_the_interrupted_attempt_logged_past_the_checkpoint(tmp_path: Path) -> None:
    first = TensorBoardCallbacks(tmp_path)
    first.on_metrics(_rows("stage1", range(1, 7)))  # steps 1-6 logged, then the worker died
    first.close()
    resumed = TensorBoardCallbacks(tmp_path)  # resumed from the checkpoint at step 3
    resumed.on_metrics(_rows("stage1", range(4, 9), scale=10.0))
    resumed.close()
    loss = scalars(tmp_path / "stage1")["stage1/loss"]
    assert sorted(loss) == list(range(1, 9))
    assert math.isclose(loss[2], 0.5, rel_tol=1e-6) and math.isclose(loss[4], 2.5, rel_tol=1e-6)


def test_the_trainer_logs_through_it(tmp_path: Path) -> None:
    task, optimizer, scheduler, batches = make_run(steps=6)
    recorded = RecordingCallbacks()
    tb = TensorBoardCallbacks(tmp_path / "tb")
    fit(task, optimizer, scheduler, batches, steps=6, stage="toy", checkpoint_dir=tmp_path / "ckpt",
        callbacks=CompositeCallbacks(recorded, tb), checkpoint_every=3, log_every=2)
    tb.close()
    series = scalars(tmp_path / "tb" / "toy")
    assert {f"toy/{row.name}" for row in recorded.metrics} == set(series)
    for row in recorded.metrics:
        assert math.isclose(series[f"toy/{row.name}"][row.step], row.value, rel_tol=1e-5)


def test_gkd_core_imports_without_tensorboardx() -> None:
    code = (
        "import sys; sys.modules['tensorboardX'] = None\n"
        "import gkd_core.engine, gkd_core.engine.tensorboard as tb\n"
        "from gkd_core.errors import ConfigError\n"
        "try:\n    tb.TensorBoardCallbacks('unused')\nexcept ConfigError as exc:\n    print('refused:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[3])
    assert out.returncode == 0, out.stderr
    assert "refused:" in out.stdout and "gkd-distill[worker]" in out.stdout

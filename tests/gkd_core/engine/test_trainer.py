"""The fit loop: exact resume, stop requests, checkpoints, progress, precision and bad input."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gkd_core.engine import (
    Callbacks,
    RecordingCallbacks,
    StopRequested,
    adamw_cosine,
    fit,
    latest_checkpoint,
    load_checkpoint,
)
from gkd_core.engine.trainer import NonFiniteLossError
from gkd_core.errors import CheckpointError, ConfigError

from ._toy import make_run

STEPS = 8


def _fit(ckpt: Path | None, callbacks: Callbacks, *, init_seed: int = 0, **kwargs: Any) -> Any:
    task, optimizer, scheduler, batches = make_run(init_seed, STEPS)
    options: dict[str, Any] = {"steps": STEPS, "stage": "stage1", "checkpoint_dir": ckpt, "seed": 11}
    options.update(kwargs)
    result = fit(task, optimizer, scheduler, batches, callbacks=callbacks, **options)
    return task, result


def _scramble_rngs() -> None:
    """Move every global RNG somewhere else, as a new worker process would have."""
    torch.manual_seed(12345)
    np.random.seed(54321)
    random.seed(999)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[int, float], dict[str, torch.Tensor]]:
    """Losses per step and final weights of an uninterrupted run."""
    cb = RecordingCallbacks()
    task, result = _fit(tmp_path_factory.mktemp("ref"), cb)
    assert result.steps_done == STEPS and not result.stopped
    losses = cb.values("loss")
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert len(set(losses.values())) == STEPS  # the data really changes from step to step
    return losses, {k: v.clone() for k, v in task.state_dict().items()}


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_stop_then_resume_reproduces_losses_and_weights(tmp_path: Path, reference: Any) -> None:
    ref_losses, ref_weights = reference
    first = RecordingCallbacks(stop_at_step=3)
    with pytest.raises(StopRequested) as info:
        _fit(tmp_path, first)
    assert info.value.step == 3 and info.value.checkpoint is not None and info.value.checkpoint.is_file()
    assert max(first.values("loss")) == 3  # stopped within one step of the request
    assert first.checkpoints[-1][1:] == ("stage1", 3)

    _scramble_rngs()
    second = RecordingCallbacks()
    task, result = _fit(tmp_path, second, init_seed=99)  # different initial weights: restore must win
    assert result.resumed_from == 3 and result.steps_done == STEPS
    assert any("resumed from step 3" in e for e in second.events)
    assert second.values("loss") == {s: ref_losses[s] for s in range(4, STEPS + 1)}
    _assert_same_weights(task.state_dict(), ref_weights)


def test_crash_after_checkpoint_resumes_from_it(tmp_path: Path, reference: Any) -> None:
    ref_losses, ref_weights = reference

    class Crash(RecordingCallbacks):
        def on_metrics(self, rows: list[Any]) -> None:
            super().on_metrics(rows)
            if rows[0].step == 5:
                raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, Crash(), checkpoint_every=2)
    latest = latest_checkpoint(tmp_path, "stage1")
    assert latest is not None and load_checkpoint(latest)["step"] == 4

    _scramble_rngs()
    again = RecordingCallbacks()
    task, result = _fit(tmp_path, again, init_seed=5, checkpoint_every=2)
    assert result.resumed_from == 4
    assert again.values("loss") == {s: ref_losses[s] for s in range(5, STEPS + 1)}
    _assert_same_weights(task.state_dict(), ref_weights)


def test_finished_stage_returns_immediately_with_trained_weights(tmp_path: Path, reference: Any) -> None:
    _, ref_weights = reference
    _fit(tmp_path, RecordingCallbacks())
    cb = RecordingCallbacks()
    task, result = _fit(tmp_path, cb, init_seed=42)
    assert result.steps_done == STEPS and result.resumed_from == STEPS
    assert cb.metrics == [] and cb.progress[-1][1] == 1.0
    _assert_same_weights(task.state_dict(), ref_weights)


def test_stop_before_first_step_leaves_a_checkpoint(tmp_path: Path) -> None:
    class StopNow(Callbacks):
        def should_stop(self) -> bool:
            return True

    with pytest.raises(StopRequested) as info:
        _fit(tmp_path, StopNow())
    assert info.value.step == 0
    assert latest_checkpoint(tmp_path, "stage1") == info.value.checkpoint


def test_stop_can_return_instead_of_raising(tmp_path: Path) -> None:
    _, result = _fit(tmp_path, RecordingCallbacks(stop_at_step=2), raise_on_stop=False)
    assert result.stopped and result.steps_done == 2 and result.checkpoint is not None


def test_metrics_progress_and_checkpoint_callbacks(tmp_path: Path) -> None:
    cb = RecordingCallbacks()
    _, result = _fit(tmp_path, cb, checkpoint_every=3, grad_clip=1.0, log_every=2, track_best="loss")
    names = {r.name for r in cb.metrics}
    assert names == {"loss", "mse", "l1", "lr", "grad_norm"}  # "output" is not a scalar
    assert sorted({r.step for r in cb.metrics}) == [2, 4, 6, 8]
    # 12 samples / batch 4 = 3 steps per epoch: step 4 draws its batch from epoch 1.
    assert {r.step: r.epoch for r in cb.metrics} == {2: 0, 4: 1, 6: 1, 8: 2}
    fractions = [p[1] for p in cb.progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] > 0
    assert all(eta is not None and eta >= 0 for _, _, eta in cb.progress) and cb.progress[-1][2] == 0
    assert [step for _, _, step in cb.checkpoints] == [3, 6, 8]
    assert all(path.is_file() for path, _, _ in cb.checkpoints[-2:])  # keep_last=2 pruned step 3
    assert not cb.checkpoints[0][0].exists()
    assert result.best_metric == min(cb.values("loss").values())
    assert result.last_metrics["loss"] == cb.values("loss")[STEPS]


def test_bf16_autocast_runs_on_cpu(tmp_path: Path) -> None:
    cb = RecordingCallbacks()
    task, result = _fit(tmp_path, cb, precision="bf16", steps=3)
    assert result.steps_done == 3
    assert task.autocast_seen and all(task.autocast_seen)
    assert all(np.isfinite(v) for v in cb.values("loss").values())


def test_fp32_does_not_autocast(tmp_path: Path) -> None:
    task, _ = _fit(None, RecordingCallbacks(), steps=1)
    assert task.autocast_seen == [False]


def test_corrupt_latest_checkpoint_is_an_error_naming_the_file(tmp_path: Path) -> None:
    _fit(tmp_path, RecordingCallbacks(), steps=2)
    latest = latest_checkpoint(tmp_path, "stage1")
    assert latest is not None
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=re.escape(latest.name)):
        _fit(tmp_path, RecordingCallbacks())


def test_resume_into_a_different_model_names_the_key(tmp_path: Path) -> None:
    _fit(tmp_path, RecordingCallbacks(), steps=2)
    task, optimizer, scheduler, batches = make_run()
    task.extra = torch.nn.Linear(2, 2)
    with pytest.raises(CheckpointError, match=r"extra\.weight"):
        fit(task, optimizer, scheduler, batches, steps=2, stage="stage1", checkpoint_dir=tmp_path)


def test_without_checkpoint_dir_nothing_is_written(tmp_path: Path) -> None:
    cb = RecordingCallbacks()
    _, result = _fit(None, cb, steps=2)
    assert result.checkpoint is None and cb.checkpoints == []


def test_non_finite_loss_is_reported(tmp_path: Path) -> None:
    task, optimizer, scheduler, batches = make_run()
    with torch.no_grad():
        task.head.weight.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="step 1"):
        fit(task, optimizer, scheduler, batches, steps=2, stage="s", checkpoint_dir=None)


@pytest.mark.parametrize(
    ("option", "value"),
    [("steps", 0), ("precision", "fp16"), ("log_every", 0), ("grad_clip", -1.0), ("stage", "../x")],
)
def test_bad_options_are_rejected(tmp_path: Path, option: str, value: Any) -> None:
    with pytest.raises((ConfigError, ValueError), match=str(value).replace(".", r"\.")):
        _fit(tmp_path, RecordingCallbacks(), **{option: value})


def test_exhausted_batch_source_is_a_clear_error() -> None:
    task, optimizer, scheduler, batches = make_run()
    one = [next(batches(0))]
    with pytest.raises(ConfigError, match="ran out at step 1"):
        fit(task, optimizer, scheduler, lambda start: iter(one[start:]), steps=2, stage="s", checkpoint_dir=None)


_KILLED_RUN = """
import os, signal, sys
from pathlib import Path
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads({threads})  # the parent's count: a float sum's order depends on it
from tests.gkd_core.engine.test_trainer import _fit
from gkd_core.engine import RecordingCallbacks

class KillAfterCheckpoint(RecordingCallbacks):
    def on_checkpoint(self, path, stage, step):
        if step == 4:
            os.kill(os.getpid(), signal.SIGKILL)

_fit(Path({ckpt!r}), KillAfterCheckpoint(), checkpoint_every=2)
"""


def test_process_killed_after_a_checkpoint_resumes_exactly(tmp_path: Path, reference: Any) -> None:
    ref_losses, ref_weights = reference
    root = str(Path(__file__).resolve().parents[3])
    code = _KILLED_RUN.format(root=root, ckpt=str(tmp_path), threads=torch.get_num_threads())
    env = {**os.environ, "PYTHONPATH": root}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    again = RecordingCallbacks()
    task, result = _fit(tmp_path, again, init_seed=3, checkpoint_every=2)
    assert result.resumed_from == 4
    assert again.values("loss") == {s: ref_losses[s] for s in range(5, STEPS + 1)}
    _assert_same_weights(task.state_dict(), ref_weights)


def test_frozen_submodules_run_in_eval_mode() -> None:
    task, _, _, batches = make_run()
    task.conv.requires_grad_(False)
    task.norm.requires_grad_(False)  # a frozen BatchNorm must keep its running statistics
    assert task.norm.running_mean is not None
    stats = task.norm.running_mean.clone()
    optimizer, scheduler = adamw_cosine(task, lr=1e-2, steps=2)
    fit(task, optimizer, scheduler, batches, steps=2, stage="s", checkpoint_dir=None)
    assert torch.equal(task.norm.running_mean, stats)
    assert not task.norm.training and not task.conv.training
    assert task.training and task.drop.training and task.head.training

"""CUDA paths of the engine (run only where a GPU is present; the CPU tests cover the logic)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gkd_core.engine import ConfusionMatrix, RecordingCallbacks, StopRequested, fit

from ._toy import make_run

pytestmark = pytest.mark.gpu


def _run(ckpt: Path, cb: RecordingCallbacks, init_seed: int = 0) -> torch.nn.Module:
    task, optimizer, scheduler, batches = make_run(init_seed, 6)
    fit(
        task,
        optimizer,
        scheduler,
        batches,
        steps=6,
        stage="s",
        checkpoint_dir=ckpt,
        callbacks=cb,
        device="cuda",
        precision="bf16",
        seed=1,
    )
    return task


def test_bf16_cuda_fit_stops_and_resumes(tmp_path: Path) -> None:
    ref = RecordingCallbacks()
    _run(tmp_path / "ref", ref)
    with pytest.raises(StopRequested):
        _run(tmp_path / "cut", RecordingCallbacks(stop_at_step=2))
    resumed = RecordingCallbacks()
    _run(tmp_path / "cut", resumed, init_seed=7)
    want = ref.values("loss")
    got = resumed.values("loss")
    assert sorted(got) == [3, 4, 5, 6]
    # GPU kernels may reduce in a different order, so compare closely rather than bit for bit.
    assert got == pytest.approx({s: want[s] for s in got}, rel=1e-3)


def test_confusion_matrix_on_cuda_matches_cpu() -> None:
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 5, (2, 33, 31), generator=gen)
    pred = torch.randint(0, 5, (2, 33, 31), generator=gen)
    cpu, gpu = ConfusionMatrix(5), ConfusionMatrix(5)
    cpu.update(pred, target)
    gpu.update(pred.cuda(), target.cuda())
    assert gpu.matrix.is_cuda
    assert gpu.compute() == cpu.compute()

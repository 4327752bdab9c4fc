"""Checkpoint files: round trip through weights_only, atomicity, manifests, corruption, handover."""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import gkd_core
from gkd_core.engine import adamw_cosine, latest_checkpoint, load_checkpoint, load_module_state, save_checkpoint
from gkd_core.engine.checkpoint import read_model_state
from gkd_core.engine.seeding import capture_rng_state, restore_rng_state
from gkd_core.errors import CheckpointError


@dataclass(frozen=True)
class _Cfg:
    root: Path
    sizes: tuple[int, int]


class _Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.student = nn.Linear(3, 3)
        self.teacher = nn.Linear(3, 5)


def _save(directory: Path, step: int = 1, **kwargs: object) -> tuple[Path, _Pair]:
    model = _Pair()
    optimizer, scheduler = adamw_cosine(model, lr=1e-3, steps=10)
    loss = model.student(torch.ones(2, 3)).sum()
    loss.backward()
    optimizer.step()
    scheduler.step()
    path = save_checkpoint(
        directory,
        stage="stage1",
        step=step,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        rng_state=capture_rng_state(),
        config=_Cfg(Path("/data"), (1, 2)),
        best_metric=0.5,
        **kwargs,  # type: ignore[arg-type]
    )
    return path, model


def test_round_trip_loads_with_weights_only(tmp_path: Path) -> None:
    path, model = _save(tmp_path, step=7, exclude_prefixes=("teacher.",))
    raw = torch.load(path, weights_only=True)  # nothing in the file needs unpickling of code
    assert raw["step"] == 7
    state = load_checkpoint(path)
    assert state["config"] == {"root": "/data", "sizes": [1, 2]}
    assert state["code_version"] == gkd_core.__version__
    assert state["best_metric"] == 0.5
    assert set(state["model"]) == {"student.weight", "student.bias"}  # teacher excluded
    assert state["optimizer"]["state"] and state["scheduler"]["last_epoch"] == 1
    fresh = _Pair()
    load_module_state(fresh, state["model"], exclude_prefixes=("teacher.",))
    assert torch.equal(fresh.student.weight, model.student.weight)


def test_rng_state_survives_the_file(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    expected = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    restore_rng_state(load_checkpoint(path)["rng"])
    got_torch, got_np, got_py = torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)]
    # The file was saved before `expected` was drawn, so restoring replays the same numbers.
    assert torch.equal(got_torch, expected[0])
    assert np.array_equal(got_np, expected[1])
    assert got_py == expected[2]


def test_compile_prefix_is_stripped_on_load() -> None:
    model = nn.Linear(2, 2)
    state = {f"_orig_mod.{k}": v + 1 for k, v in model.state_dict().items()}
    load_module_state(model, state)
    assert torch.equal(model.weight, state["_orig_mod.weight"])


def test_shape_mismatch_names_the_key() -> None:
    with pytest.raises(CheckpointError, match=r"'weight' has shape \(4, 2\)"):
        load_module_state(nn.Linear(2, 2), {"weight": torch.zeros(4, 2), "bias": torch.zeros(2)})


def test_truncated_file_raises_naming_it(tmp_path: Path) -> None:
    path, _ = _save(tmp_path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CheckpointError, match=re.escape(path.name)):
        load_checkpoint(path)


def test_garbage_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk\.pt"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")


def test_missing_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "partial.pt"
    torch.save({"format": 1, "stage": "s", "step": 1}, path)
    with pytest.raises(CheckpointError, match="'model'"):
        load_checkpoint(path)


def test_code_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "stage": "s", "step": 1, "model": {}, "hook": _Cfg(Path("x"), (1, 1))}, path)
    with pytest.raises(CheckpointError, match=r"evil\.pt"):
        load_checkpoint(path)


def test_latest_follows_manifest_and_prunes(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path, "stage1") is None
    for step in (2, 4, 6):
        _save(tmp_path, step=step)
    files = sorted(p.name for p in tmp_path.glob("stage1-step*.pt"))
    assert files == ["stage1-step00000004.pt", "stage1-step00000006.pt"]  # keep_last=2
    assert latest_checkpoint(tmp_path, "stage1") == tmp_path / "stage1-step00000006.pt"
    assert latest_checkpoint(tmp_path, "stage2") is None
    assert not list(tmp_path.glob("*.tmp"))  # no temp files left behind


def test_latest_ignores_stray_temp_files_and_a_stale_manifest(tmp_path: Path) -> None:
    _save(tmp_path, step=3)
    (tmp_path / ".stage1-step00000009.pt.abc.tmp").write_bytes(b"half written")
    assert latest_checkpoint(tmp_path, "stage1") == tmp_path / "stage1-step00000003.pt"
    manifest = tmp_path / "stage1.latest.json"
    manifest.write_text(json.dumps({"file": "stage1-step00000099.pt", "size": 1}))
    assert latest_checkpoint(tmp_path, "stage1") == tmp_path / "stage1-step00000003.pt"
    manifest.write_text(json.dumps({"file": "stage1-step00000003.pt", "size": 1}))
    with pytest.raises(CheckpointError, match=r"stage1-step00000003\.pt has \d+ bytes"):
        latest_checkpoint(tmp_path, "stage1")
    manifest.write_text("{broken")
    assert latest_checkpoint(tmp_path, "stage1") == tmp_path / "stage1-step00000003.pt"
    _save(tmp_path, step=4)
    assert not list(tmp_path.glob("*.tmp"))  # the stray temp file was cleaned up


def test_file_renamed_before_a_crash_beats_the_manifest(tmp_path: Path) -> None:
    path, _ = _save(tmp_path, step=3)
    newer = tmp_path / "stage1-step00000005.pt"
    newer.write_bytes(path.read_bytes())  # as if killed between the rename and the manifest write
    assert latest_checkpoint(tmp_path, "stage1") == newer


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path: Path) -> None:
    good, _ = _save(tmp_path, step=1)
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_checkpoint(tmp_path, stage="stage1", step=2, model=nn.Linear(1, 1), config={"bad": object()})
    assert latest_checkpoint(tmp_path, "stage1") == good
    assert load_checkpoint(good)["step"] == 1


def test_read_model_state_for_stage_handover(tmp_path: Path) -> None:
    path, model = _save(tmp_path)
    student = nn.Linear(3, 3)
    load_module_state(student, read_model_state(path, "student."))
    assert torch.equal(student.weight, model.student.weight)
    with pytest.raises(CheckpointError, match=r"'head\.'"):
        read_model_state(path, "head.")

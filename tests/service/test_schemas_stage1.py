"""Stage-1 schedule and the proxy step in the JobSpec: epochs or steps, 1a inheriting from 1b."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from gkd_core.experiment import DatasetSplit
from service.schemas import JobSpec
from tests.service.factories import spec_dict
from worker.spec_convert import local_split, to_experiment_config


def _spec(**changes: object) -> JobSpec:
    return JobSpec.model_validate(spec_dict(**changes))


def test_steps_default_when_neither_steps_nor_epochs_is_given() -> None:
    spec = _spec(stage1={"batch_size": 2, "image_size": 32})
    assert spec.stage1.steps == 20_000 and spec.stage1.epochs is None


@pytest.mark.parametrize("where", ["stage1", "proxy_step"])
def test_steps_and_epochs_together_are_refused(where: str) -> None:
    both = {"steps": 10, "epochs": 2}
    stage1 = {"image_size": 32, **both} if where == "stage1" else {"image_size": 32, "proxy_step": both}
    with pytest.raises(ValidationError, match="give steps or epochs, not both"):
        _spec(stage1=stage1, proxy={"dataset": "px", "split": "train"})


def test_proxy_step_needs_a_proxy_and_a_two_stage_method() -> None:
    with pytest.raises(ValidationError, match="no proxy is given"):
        _spec(stage1={"image_size": 32, "proxy_step": {"image_size": 224}})
    with pytest.raises(ValidationError, match="has no stage 1"):
        _spec(method="kd", proxy={"dataset": "px", "split": "train"})


def test_proxy_step_inherits_what_it_leaves_out() -> None:
    spec = _spec(
        proxy={"dataset": "px", "split": "train"},
        stage1={"epochs": 300, "batch_size": 128, "lr": 2e-4, "image_size": 512,
                "proxy_step": {"epochs": 100, "batch_size": 512, "image_size": 224, "student_patch_size": 14}},
    )
    step = spec.stage1.step_1a()
    assert (step.epochs, step.steps, step.batch_size, step.image_size, step.student_patch_size) == (
        100, None, 512, 224, 14
    )
    assert step.lr is None  # its own batch: the scaling rule, not 1b's lr
    inherited = _spec(proxy={"dataset": "px", "split": "train"}, stage1={"steps": 7, "lr": 3e-4, "image_size": 32})
    one_a = inherited.stage1.step_1a()
    assert (one_a.steps, one_a.lr, one_a.image_size, one_a.batch_size) == (7, 3e-4, 32, 32)


def test_the_worker_config_carries_both_steps(tmp_path: Path) -> None:
    spec = _spec(
        proxy={"dataset": "px", "split": "train"},
        stage1={"epochs": 3, "batch_size": 4, "image_size": 64,
                "proxy_step": {"steps": 5, "batch_size": 8, "image_size": 56, "student_patch_size": 14}},
        stage2={"steps": 2, "batch_size": 2, "crop_size": 32},
    )
    cfg = to_experiment_config(
        spec,
        dataset_ref=lambda ref: DatasetSplit(tmp_path / ref.dataset, split=ref.split, name=ref.dataset),
        resolve_weights=str,
        device="cpu",
    )
    assert cfg.stage1.epochs == 3 and cfg.stage1.image_size == 64 and cfg.stage1.batch_size == 4
    assert cfg.proxy_stage1 is not None
    one_a = cfg.proxy_stage1
    assert (one_a.steps, one_a.epochs, one_a.batch_size, one_a.image_size, one_a.student_patch_size) == (
        5, None, 8, 56, 14
    )
    assert cfg.student.img_size == 32  # the student is built for stage 2; stage 1 rebuilds it per step


def test_stage2_protocol_fields_and_head_options() -> None:
    spec = _spec(stage2={"epochs": 2, "crop_size": 32, "base_size": 512, "scale": [0.5, 2.0], "cat_max_ratio": 0.75,
                         "head": "mask2former", "head_channels": 256, "head_queries": 100, "head_layers": 9})
    assert spec.stage2.epochs == 2 and spec.stage2.steps is None and spec.stage2.head_queries == 100
    with pytest.raises(ValidationError, match="head_queries applies to the mask2former head, not 'fpn'"):
        _spec(stage2={"crop_size": 32, "head": "fpn", "head_queries": 10})
    with pytest.raises(ValidationError, match="scale"):
        _spec(stage2={"crop_size": 32, "scale": [2.0, 1.0]})
    with pytest.raises(ValidationError, match="give steps or epochs, not both"):
        _spec(stage2={"crop_size": 32, "steps": 3, "epochs": 1})


def test_targets_carry_their_test_time_scale_and_benchmark_group(tmp_path: Path) -> None:
    spec = _spec(targets=[{"dataset": "tgt", "split": "val", "resize": [1024, 512], "group": "GTAV"}])
    cfg = to_experiment_config(
        spec,
        dataset_ref=lambda ref: local_split(tmp_path, "folder", ref),
        resolve_weights=str,
        device="cpu",
    )
    assert cfg.targets[0].resize == (1024, 512) and cfg.targets[0].group == "GTAV"
    with pytest.raises(ValidationError, match="16-8192"):
        _spec(targets=[{"dataset": "tgt", "split": "val", "resize": [4, 512]}])

"""Baseline tasks (KD, CWD, feature MSE) and stage 2 through the real trainer with a real tiny ViT."""

from __future__ import annotations

import copy
from functools import partial
from pathlib import Path

import pytest
import torch

from gkd_core.config import BackboneConfig
from gkd_core.engine.callbacks import RecordingCallbacks
from gkd_core.losses.distill_baselines import cwd_loss, kd_pixel_loss
from gkd_core.models.backbone import build_backbone
from gkd_core.models.teacher import build_teacher
from gkd_core.stages.baselines import FeatureMSETask, FrozenModel, LogitDistillTask
from gkd_core.stages.stage2 import (
    SegmentationModel,
    SegmentationTask,
    Stage2Config,
    build_segmentation_model,
    optimizer_groups,
    train_segmentation,
)
from tests.gkd_core.stage2.fakes import TinyLevelBackbone

VIT = BackboneConfig("vit_tiny_patch16_224", img_size=32, overrides={"depth": 4, "embed_dim": 32, "num_heads": 2})


def _batch(seed: int = 0, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, 3, (2, size, size), generator=g)
    mask[:, 0] = 255
    return {"image": torch.rand(2, 3, size, size, generator=g), "mask": mask}


def _student(frozen: bool = False) -> SegmentationModel:
    torch.manual_seed(0)
    return build_segmentation_model(TinyLevelBackbone(8, 4), "linear", 3, channels=8, frozen_encoder=frozen)


@pytest.mark.parametrize("kind", ["kd", "cwd"])
def test_logit_distillation_is_zero_against_an_identical_teacher(kind: str) -> None:
    student = _student().eval()
    terms = {"kd": partial(kd_pixel_loss, temperature=2.0), "cwd": partial(cwd_loss, temperature=2.0)}
    task = LogitDistillTask(student, copy.deepcopy(student), lambda s, t, m: terms[kind](s, t), name=kind)
    out = task(_batch())
    assert out[kind].item() == pytest.approx(0.0, abs=1e-6)
    assert out["loss"].item() == pytest.approx(out["ce"].item(), rel=1e-6)


def test_logit_distillation_trains_the_student_not_the_teacher() -> None:
    student, teacher = _student(), _student()
    with torch.no_grad():
        for p in teacher.head.parameters():
            p.add_(0.5)
    task = LogitDistillTask(student, teacher, partial(kd_pixel_loss, temperature=1.0), name="kd")
    task.train()
    assert not task.teacher.training and task.student.training
    out = task(_batch())
    assert out["kd"].item() > 0
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None for p in student.backbone.parameters())


def test_feature_mse_task_matches_teacher_tokens_on_the_student_grid() -> None:
    torch.manual_seed(0)
    student = build_segmentation_model(build_backbone(VIT), "linear", 3, channels=8, frozen_encoder=False)
    teacher_cfg = BackboneConfig(
        "vit_small_patch16_224", img_size=32, overrides={"depth": 2, "embed_dim": 48, "num_heads": 2}
    )
    teacher = build_teacher(teacher_cfg, student.backbone)  # type: ignore[arg-type]
    task = FeatureMSETask(student, teacher, teacher.embed_dim)
    task.train()
    out = task(_batch())
    assert out["feature_mse"].item() > 0
    out["loss"].backward()
    assert task.projector.proj.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())
    assert isinstance(task.teacher, FrozenModel)


def test_stage2_through_the_trainer_keeps_a_real_vit_bit_identical(tmp_path: Path) -> None:
    """Parameters and buffers of the frozen encoder are unchanged after real fit() steps."""
    torch.manual_seed(0)
    backbone = build_backbone(VIT)
    backbone.train()
    model = build_segmentation_model(backbone, "fpn", 3, channels=8, frozen_encoder=True)
    assert model.indices == [0, 1, 2, 3]
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    buffers_before = {k: v.clone() for k, v in backbone.named_buffers()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    cfg = Stage2Config(steps=3, batch_size=2, crop_size=32, head="fpn", lr=1e-2, checkpoint_every=10)
    batches = [_batch(i) for i in range(3)]
    cb = RecordingCallbacks()
    train_segmentation(
        SegmentationTask(model),
        optimizer_groups(model, cfg),
        cfg,
        lambda start: iter(batches[start:]),
        stage="stage2",
        checkpoint_dir=tmp_path,
        callbacks=cb,
    )
    assert len(cb.values("ce")) == 3
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key
    for key, value in backbone.named_buffers():
        assert torch.equal(value, buffers_before[key]), key
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())
    assert not backbone.training

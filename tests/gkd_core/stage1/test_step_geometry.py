"""Steps 1a and 1b at their own geometry (METHOD.md, stage 1): patch 16 -> 14 for 1a, back to 16 for 1b.

The official code runs 1a with the student's 16x16 patch kernel resized bicubically to 14x14 (a
patch-14 DINOv2 teacher then runs natively, 16x16 grid at 224 px) and 1b with the kernel back at
16x16, position embeddings resampled to the 1b grid and the teacher kernel-resized 14 -> 16.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gkd_core.config import Stage1Config, steps_for_epochs
from gkd_core.engine import RecordingCallbacks
from gkd_core.errors import ConfigError
from gkd_core.models import Backbone, Teacher, build_backbone, build_teacher
from gkd_core.stages import run_stage1
from tests.gkd_core.models.tiny import tiny_resnet, tiny_student, tiny_teacher

GEOMETRY_KEYS = ("model.patch_embed.proj.weight", "model.pos_embed")


def test_patch_16_to_14_changes_only_kernel_and_position_embeddings() -> None:
    torch.manual_seed(0)
    student = build_backbone(tiny_student(64))
    before = {k: v.clone() for k, v in student.state_dict().items()}
    note = student.set_geometry(img_size=56, patch_size=14)

    after = student.state_dict()
    assert after["model.patch_embed.proj.weight"].shape == (32, 3, 14, 14)
    assert after["model.pos_embed"].shape == (1, 1 + 4 * 4, 32)  # 56 / 14 = 4x4 grid plus the CLS slot
    assert student.patch_size == 14 and student.img_size == 56 and student.native_patch_size == 16
    assert student.grid_for(56) == (4, 4)
    assert "16x16 -> 14x14" in note and "4x4 -> 4x4" not in note
    for key, value in before.items():
        if key not in GEOMETRY_KEYS:
            assert torch.equal(value, after[key]), key
    # The kernel is the paper's plain bicubic resize of the old one.
    old_kernel = before["model.patch_embed.proj.weight"]
    expected = F.interpolate(old_kernel, size=(14, 14), mode="bicubic", align_corners=False)
    torch.testing.assert_close(after["model.patch_embed.proj.weight"], expected)
    assert torch.isfinite(student.forward_tokens(torch.rand(2, 3, 56, 56)).patches).all()


def test_round_trip_16_14_16_is_within_interpolation_error() -> None:
    student = build_backbone(tiny_student(64))
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    smooth = torch.exp(-(xx**2 + yy**2) * 2.0)  # a smooth kernel, as trained patch kernels mostly are
    with torch.no_grad():
        student.model.patch_embed.proj.weight.copy_(smooth.expand(32, 3, 16, 16) * torch.rand(32, 3, 1, 1))
    original = student.model.patch_embed.proj.weight.detach().clone()
    student.set_geometry(img_size=56, patch_size=14)
    student.set_geometry(img_size=64, patch_size=16)
    back = student.model.patch_embed.proj.weight.detach()
    relative = float((back - original).norm() / original.norm())
    assert back.shape == original.shape and relative < 0.02, relative


def test_cnn_students_cannot_change_patch() -> None:
    cnn = build_backbone(tiny_resnet(64))
    with pytest.raises(ConfigError, match="not a ViT"):
        cnn.set_geometry(img_size=64, patch_size=14)


def test_epochs_become_steps() -> None:
    assert steps_for_epochs(100, 1_281_167, 512) == 250_228  # 1a: ImageNet-1k, 100 epochs at 512
    assert steps_for_epochs(300, 24_966, 128) == 58_515  # 1b: GTAV, 300 epochs at 128
    assert Stage1Config(epochs=2, batch_size=4).resolved(10).steps == 5
    with pytest.raises(ConfigError, match="epochs"):
        Stage1Config(epochs=0)


def test_1a_runs_the_patch14_teacher_natively_and_1b_resizes_it(tmp_path: Path) -> None:
    torch.manual_seed(0)
    student = build_backbone(tiny_student(64))
    carried = {k: v.clone() for k, v in student.state_dict().items() if k not in GEOMETRY_KEYS}
    teachers = []

    def teacher_for(aligned_to: Backbone) -> Teacher:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            teacher = build_teacher(tiny_teacher(aligned_to.img_size), aligned_to)
        teachers.append(teacher)
        return teacher

    base = Stage1Config(steps=2, batch_size=2, checkpoint_every=0, teacher_precision="fp32", lr=1e-3)
    proxy_cfg = replace(base, image_size=56, student_patch_size=14)
    source_cfg = replace(base, image_size=64)
    callbacks = RecordingCallbacks()
    run_stage1(
        student,
        teacher_for,
        source_cfg,
        source=[{"image": torch.rand(2, 3, 64, 64)}],
        proxy=[{"image": torch.rand(2, 3, 56, 56)}],
        proxy_cfg=proxy_cfg,
        callbacks=callbacks,
    )
    t1a, t1b = teachers
    assert t1a.backbone.patch_size == 14 and "kernel" not in t1a.alignment  # native patch-14 teacher in 1a
    assert "14x14 -> 16x16" in t1b.alignment and t1b.backbone.patch_size == 16
    assert "both give a 4x4 token grid at 56 px" in t1a.alignment
    assert "both give a 4x4 token grid at 64 px" in t1b.alignment
    grids = [e for e in callbacks.events if "token grids" in e]
    assert grids[0].startswith("stage1a") and "16x16 -> 14x14" in grids[0]
    assert grids[1].startswith("stage1b") and "14x14 -> 16x16" in grids[1]
    assert student.patch_size == 16 and student.model.patch_embed.proj.weight.shape[-1] == 16
    # Both steps trained the student; everything but the geometry tensors carried over in place.
    changed = [k for k, v in student.state_dict().items() if k in carried and not torch.equal(v, carried[k])]
    assert changed

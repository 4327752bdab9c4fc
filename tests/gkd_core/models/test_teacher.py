"""The frozen teacher and token-grid matching (patch 14 -> 16 kernel resize; bilinear token resize)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gkd_core.models import Teacher, align_teacher_to_student, build_backbone, build_teacher
from tests.gkd_core.models.tiny import tiny_resnet, tiny_student, tiny_teacher


def test_teacher_is_frozen_and_stays_in_eval_mode() -> None:
    teacher = build_teacher(tiny_teacher())
    assert all(not p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.backbone.training
    out = teacher(torch.rand(2, 3, 32, 32))
    assert out.patches.grad_fn is None and out.cls.grad_fn is None
    assert out.patches.dtype == torch.float32


def test_bf16_teacher_is_close_to_fp32() -> None:
    torch.manual_seed(0)
    teacher = build_teacher(tiny_teacher())
    x = torch.rand(2, 3, 32, 32)
    ref = teacher(x).patches
    teacher.precision = "bf16"
    low = teacher(x).patches
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, atol=0.1, rtol=0.05)
    assert not torch.equal(low, ref)  # it really ran in bf16


def test_patch14_teacher_is_resized_to_patch16_student_grid() -> None:
    torch.manual_seed(0)
    student = build_backbone(tiny_student(img_size=112))  # 7x7 grid
    teacher = Teacher(build_backbone(tiny_teacher(img_size=112)))  # 8x8 grid at patch 14
    old_kernel = teacher.backbone.model.patch_embed.proj.weight.detach().clone()
    old_pos = teacher.backbone.model.pos_embed.detach().clone()
    assert old_kernel.shape[-1] == 14 and teacher.backbone.grid_for(112) == (8, 8)

    note = align_teacher_to_student(teacher, student)

    assert "14x14 -> 16x16 (bicubic)" in note and "8x8 -> 7x7" in note and "7x7 token grid" in note
    model = teacher.backbone.model
    expected_kernel = F.interpolate(old_kernel, size=(16, 16), mode="bicubic", align_corners=False)
    torch.testing.assert_close(model.patch_embed.proj.weight, expected_kernel)
    # Position embeddings: prefix entry kept, the 8x8 patch part resampled to 7x7.
    assert model.pos_embed.shape == (1, 1 + 49, 48)
    torch.testing.assert_close(model.pos_embed[:, :1], old_pos[:, :1])
    assert teacher.target_grid is None
    assert all(not p.requires_grad for p in teacher.parameters())
    out = teacher(torch.rand(2, 3, 112, 112))
    assert out.grid == (7, 7) and out.patches.shape == (2, 49, 48)


def test_cnn_student_gets_bilinearly_resized_teacher_tokens() -> None:
    torch.manual_seed(0)
    student = build_backbone(tiny_resnet(img_size=64))  # 2x2 grid (stride 32)
    teacher = build_teacher(tiny_teacher(img_size=64), student)  # 4x4 grid at patch 14
    assert "resized bilinearly to the student grid 2x2" in teacher.alignment
    assert teacher.backbone.patch_size == 14  # no kernel resize for a CNN student
    x = torch.rand(2, 3, 64, 64)
    raw = teacher.backbone.forward_tokens(x)
    fmap = raw.patches.transpose(1, 2).reshape(2, 48, 4, 4)
    expected = F.interpolate(fmap, size=(2, 2), mode="bilinear", align_corners=False).flatten(2).transpose(1, 2)
    out = teacher(x)
    assert out.grid == (2, 2)
    torch.testing.assert_close(out.patches, expected)
    torch.testing.assert_close(out.cls, raw.cls)


def test_same_patch_size_needs_no_change() -> None:
    student = build_backbone(tiny_student(img_size=32))
    teacher = build_teacher(tiny_student(img_size=32), student)
    assert teacher.alignment == "teacher and student both give a 2x2 token grid at 32 px"

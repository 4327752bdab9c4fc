"""The committed cost table (gkd_catalog/costs.json) against the real models at sizes it was not fitted at."""

from __future__ import annotations

import pytest
import torch

from bench.cost_table import FIT_SIDES, HEAD_SIDES, backbone_point, build, head_point, measure
from gkd_catalog.costs import HEAD_CELL, cls_head_cost, head_cost, model_cost, token_head_cost
from gkd_core.losses.qsd import TOKEN_HEADS, ProjectionHead

CHECK_SIDE = 28  # cells; the table was fitted at FIT_SIDES
assert CHECK_SIDE not in FIT_SIDES


@pytest.mark.parametrize(
    "name",
    [
        "deit_small_patch16_224",  # plain ViT, one prefix token
        "vit_small_patch14_reg4_dinov2",  # register tokens: five prefix tokens, patch 14
        "resnet18",  # CNN: cost per pixel
        "swin_tiny_patch4_window7_224",  # hierarchical: window attention
    ],
)
def test_backbone_flops_and_activations_at_a_fourth_size(name: str) -> None:
    row = model_cost(name)
    _, flops, saved = backbone_point(name, CHECK_SIDE, row.cell)
    side = CHECK_SIDE * row.cell
    assert row.forward_flops(side) == pytest.approx(flops, rel=1e-6)
    assert row.saved_bytes(side) == pytest.approx(saved, rel=1e-3)


def test_a_resized_patch_kernel_changes_only_the_patch_embedding() -> None:
    """Step 1b runs a patch-14 teacher at the patch-16 student's grid (align_teacher_to_student)."""
    row = model_cost("vit_small_patch14_dinov2")
    teacher = build("vit_small_patch14_dinov2", 224)
    teacher.set_geometry(img_size=512, patch_size=16)
    images = torch.empty(1, 3, 512, 512, device="meta")
    flops, _ = measure(lambda: teacher.forward_levels(images, teacher.default_level_indices()))
    assert row.forward_flops(512, patch=16) == pytest.approx(flops, rel=1e-6)


@pytest.mark.parametrize("head", ["linear", "fpn", "mask2former"])
def test_head_costs_at_an_unseen_size_class_count_and_width(head: str) -> None:
    side = 21 * HEAD_CELL
    assert side // HEAD_CELL not in HEAD_SIDES
    row = head_cost(head, "deit_small_patch16_224")
    flops, saved, params = head_point(head, [384] * 4, side, 19, 96)
    assert row.forward_flops(side, 19, 96) == pytest.approx(flops, rel=1e-6)
    assert row.saved_bytes(side, 19, 96) == pytest.approx(saved, rel=1e-3)
    assert row.params(19, 96) == pytest.approx(params, rel=1e-9)


@pytest.mark.parametrize("kind", sorted(TOKEN_HEADS))
def test_token_head_formulas_match_the_modules(kind: str) -> None:
    tokens, cs, ct = 64, 32, 48
    head, cls = TOKEN_HEADS[kind](cs, ct), ProjectionHead(cs, ct)  # on the CPU: QSD's fp32 block needs autocast
    student, teacher = torch.randn(2, tokens, cs), torch.randn(2, tokens, ct)
    flops, saved = measure(lambda: head(student, teacher))
    want_flops, want_saved, want_params = token_head_cost(kind, tokens, cs, ct)
    assert 2 * want_flops == flops
    assert want_params == sum(p.numel() for p in head.parameters())
    assert 2 * want_saved == pytest.approx(saved, rel=0.35)  # the formula counts the main tensors only
    cls_flops, _ = measure(lambda: cls(torch.randn(2, cs)))
    assert 2 * cls_head_cost(cs, ct)[0] == cls_flops

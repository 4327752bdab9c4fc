"""Stage 2 keeps the distilled encoder bit-identical: parameters and buffers, after real training steps."""

from __future__ import annotations

import pytest
import torch

from gkd_core.errors import ConfigError
from gkd_core.models.heads import build_head
from gkd_core.stages.stage2 import (
    SegmentationModel,
    SegmentationTask,
    assert_frozen,
    level_dims,
    level_indices,
    level_sizes,
)
from tests.gkd_core.stage2.fakes import TinyLevelBackbone


def test_level_indices_follow_the_paper_and_generalise() -> None:
    assert level_indices(12) == [3, 5, 7, 11]  # blocks 4, 6, 8, 12
    assert level_indices(4) == [0, 1, 2, 3]
    assert level_indices(2) == [0, 0, 0, 1]
    assert level_indices(24)[-1] == 23
    with pytest.raises(ConfigError):
        level_indices(0)
    assert level_sizes((64, 32)) == [(16, 8), (8, 4), (4, 2), (2, 1)]


def _batch(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, 3, (2, 32, 32), generator=g)
    mask[:, :4] = 255
    return {"image": torch.rand(2, 3, 32, 32, generator=g), "mask": mask}


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_encoder_parameters_and_buffers_are_bit_identical_after_training() -> None:
    torch.manual_seed(0)
    backbone = TinyLevelBackbone(embed_dim=8, depth=4)
    backbone.train()  # as handed over from stage 1: must be put in eval by the model
    indices = level_indices(backbone.num_blocks)
    head = build_head("fpn", level_dims(backbone, indices), num_classes=3, channels=8)
    model = SegmentationModel(backbone, head, indices, frozen_encoder=True)
    task = SegmentationTask(model)
    before = _snapshot(backbone)
    head_before = _snapshot(head)
    params = model.trainable_parameters()
    assert {id(p) for p in params} == {id(p) for p in head.parameters()}
    opt = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.05)
    task.train()
    assert_frozen(backbone)
    for step in range(3):
        out = task(_batch(step))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    after = _snapshot(backbone)
    assert before.keys() == after.keys()
    for key in before:
        assert torch.equal(before[key], after[key]), key
    assert all(p.grad is None for p in backbone.parameters())
    assert any(not torch.equal(head_before[k], v) for k, v in _snapshot(head).items())
    assert not model.features(_batch(0)["image"])[0].requires_grad


def test_unfrozen_encoder_does_train() -> None:
    """The fine-tune baseline path: the same model with frozen_encoder=False changes its encoder."""
    torch.manual_seed(0)
    backbone = TinyLevelBackbone(embed_dim=8, depth=2)
    indices = level_indices(backbone.num_blocks)
    head = build_head("linear", level_dims(backbone, indices), num_classes=3, channels=8)
    model = SegmentationModel(backbone, head, indices, frozen_encoder=False)
    before = _snapshot(backbone)
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    model.train()
    loss = SegmentationTask(model)(_batch(0))["loss"]
    loss.backward()
    opt.step()
    assert any(not torch.equal(before[k], v) for k, v in _snapshot(backbone).items())
    with pytest.raises(RuntimeError, match="not frozen"):
        assert_frozen(backbone)

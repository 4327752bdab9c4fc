"""The head-owned training loss: the dense heads keep their stage-2 numbers bit for bit."""

from __future__ import annotations

import pytest
import torch

from gkd_core.stages.stage2 import SegmentationTask, build_segmentation_model, segmentation_ce
from tests.gkd_core.stage2.fakes import TinyLevelBackbone


def _batch(seed: int, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, 3, (2, size, size), generator=g)
    mask[:, 0] = 255
    return {"image": torch.rand(2, 3, size, size, generator=g), "mask": mask}


@pytest.mark.parametrize("head", ["linear", "fpn"])
def test_dense_heads_loss_is_bit_identical_to_pixel_ce_on_the_logits(head: str) -> None:
    """SegmentationTask calls head.loss: for linear/fpn that is the old CE on model(images), bit for bit."""
    torch.manual_seed(0)
    model = build_segmentation_model(TinyLevelBackbone(8, 4), head, 3, channels=8)
    model.train()
    batch = _batch(1)
    out = SegmentationTask(model)(batch)
    assert set(out) == {"loss", "ce"}
    old = segmentation_ce(model(batch["image"]), batch["mask"])
    assert torch.equal(out["loss"], old) and torch.equal(out["ce"], old.detach())
    assert out["loss"].requires_grad and not out["ce"].requires_grad

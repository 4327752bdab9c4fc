"""Review: the CNN token-grid probe must not touch BatchNorm statistics of a student in train mode."""

from __future__ import annotations

import torch

from gkd_core.models.backbone import build_backbone
from tests.gkd_core.models.tiny import tiny_resnet


def test_grid_probe_keeps_batchnorm_stats_and_train_mode() -> None:
    backbone = build_backbone(tiny_resnet(32))
    backbone.train()
    stats = {k: v.clone() for k, v in backbone.model.state_dict().items() if "running" in k or "num_batches" in k}

    assert backbone.grid_for(32) == (1, 1)  # a 1x1 final map: train-mode BN on one image would raise

    after = backbone.model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in stats.items())
    assert backbone.model.training

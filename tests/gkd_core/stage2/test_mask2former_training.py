"""Mask2Former through stage 2: the task, the trainer (frozen encoder, clipping, resume), the optimizer
groups and sliding-window evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from gkd_core.config import BackboneConfig
from gkd_core.engine.callbacks import RecordingCallbacks
from gkd_core.engine.trainer import StopRequested
from gkd_core.errors import ConfigError
from gkd_core.models.backbone import build_backbone
from gkd_core.stages.stage2 import (
    SegmentationModel,
    SegmentationTask,
    Stage2Config,
    build_segmentation_model,
    evaluate_segmentation,
    optimizer_groups,
    train_segmentation,
)

VIT = BackboneConfig("vit_tiny_patch16_224", img_size=32, overrides={"depth": 4, "embed_dim": 32, "num_heads": 2})
CFG = Stage2Config(
    steps=3, batch_size=2, crop_size=32, head="mask2former", head_queries=4, head_layers=2, checkpoint_every=10,
    grad_clip=0.01,
)
# Options Stage2Config does not carry, shrunk for the CPU.
SMALL = {"encoder_layers": 1, "num_points": 256}


def _batch(seed: int = 0, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, 3, (2, size, size), generator=g)
    mask[:, 0] = 255
    return {"image": torch.rand(2, 3, size, size, generator=g), "mask": mask}


def _model(seed: int = 0) -> SegmentationModel:
    torch.manual_seed(seed)
    backbone = build_backbone(VIT)
    backbone.train()  # as handed over from stage 1: the model must put it in eval
    options = {**CFG.head_options(), **SMALL}
    return build_segmentation_model(backbone, "mask2former", 3, channels=16, head_options=options)


def _train(model: SegmentationModel, ckpt: Path, cb: RecordingCallbacks) -> None:
    cfg = Stage2Config(**{**CFG.__dict__, "checkpoint_every": 1})
    batches = [_batch(i) for i in range(cfg.steps)]
    train_segmentation(
        SegmentationTask(model),
        optimizer_groups(model, cfg),
        cfg,
        lambda start: iter(batches[start:]),
        stage="stage2",
        checkpoint_dir=ckpt,
        callbacks=cb,
    )


def test_stage2_fit_keeps_a_real_vit_bit_identical_and_logs_every_part(tmp_path: Path) -> None:
    model = _model()
    backbone = model.backbone
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    cb = RecordingCallbacks()
    _train(model, tmp_path, cb)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in backbone.parameters()) and not backbone.training
    assert any(not torch.equal(v, head_before[k]) for k, v in model.head.state_dict().items())
    for key in ("loss", "cls", "mask", "dice", "aux", "grad_norm"):
        assert len(cb.values(key)) == CFG.steps, key  # grad_norm: CFG turns clipping on


def test_stage2_resume_gives_the_same_next_losses(tmp_path: Path) -> None:
    """Point sampling and matching draw from the RNG: a resumed run must redraw exactly the same."""
    whole = RecordingCallbacks()
    _train(_model(), tmp_path / "whole", whole)
    with pytest.raises(StopRequested):
        _train(_model(), tmp_path / "cut", RecordingCallbacks(stop_at_step=2))
    torch.manual_seed(999)  # a new process would start from other RNG states
    resumed = RecordingCallbacks()
    _train(_model(), tmp_path / "cut", resumed)
    assert sorted(resumed.values("loss")) == [3]
    assert resumed.values("loss")[3] == whole.values("loss")[3]


def test_optimizer_groups_skip_decay_on_queries_level_embeddings_and_norms() -> None:
    model = _model()
    groups = optimizer_groups(model, CFG)
    names = {id(p): n for n, p in model.head.named_parameters()}
    undecayed = {names[id(p)] for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    decayed = {names[id(p)] for g in groups if g["weight_decay"] > 0.0 for p in g["params"]}
    assert {
        "decoder.query_feat.weight",
        "decoder.query_pos.weight",
        "decoder.level_embed.weight",
        "pixel_decoder.level_embed.weight",
        "decoder.post_norm.weight",
        "pixel_decoder.input_proj.1.1.weight",  # a GroupNorm
    } <= undecayed
    assert "decoder.mask_embed.0.weight" in decayed and "decoder.class_embed.weight" in decayed
    assert all(g["lr"] == CFG.lr and CFG.lr == 1e-4 and CFG.weight_decay == 0.05 for g in groups)
    assert len(undecayed) + len(decayed) == len(names)


def test_stage2_config_head_options_and_clip() -> None:
    assert Stage2Config().clip_norm() is None  # fpn: no clipping, as before
    assert Stage2Config(head="linear").clip_norm() is None
    assert Stage2Config(head="mask2former").clip_norm() is None  # GKD's published configs do not clip
    assert Stage2Config(head="mask2former", grad_clip=0.01).clip_norm() == 0.01  # mmseg's stock value
    assert Stage2Config(head="mask2former", grad_clip=0.0).clip_norm() is None
    assert Stage2Config(head="fpn", grad_clip=1.0).clip_norm() == 1.0
    assert Stage2Config(head="mask2former").head_options() == {}
    assert CFG.head_options() == {"num_queries": 4, "num_layers": 2}
    with pytest.raises(ConfigError, match="head_queries"):
        Stage2Config(head_queries=0)
    with pytest.raises(ConfigError, match="grad_clip"):
        Stage2Config(grad_clip=-1.0)


def test_sliding_window_evaluation_runs_with_mask2former() -> None:
    model = _model().eval()
    g = torch.Generator().manual_seed(3)
    data: list[dict[str, Any]] = [
        {"image": torch.rand(3, 48, 40, generator=g), "mask": torch.randint(0, 3, (48, 40), generator=g)}
        for _ in range(2)
    ]
    metrics = evaluate_segmentation(model, data, 3, window=32, stride=21)  # type: ignore[arg-type]
    assert metrics.images == 2 and 0.0 <= metrics.miou <= 1.0

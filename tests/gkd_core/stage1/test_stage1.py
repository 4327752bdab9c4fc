"""Stage-1 task: masking policy, loss composition, teacher frozen, golden loss and short runs."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from gkd_core.config import Stage1Config
from gkd_core.engine import RecordingCallbacks
from gkd_core.errors import ConfigError
from gkd_core.models import Backbone, Teacher, build_backbone, build_teacher
from gkd_core.stages import Stage1Task, make_patch_mask, run_stage1
from gkd_core.stages import stage1 as stage1_module
from tests.gkd_core.models.tiny import tiny_resnet, tiny_student, tiny_teacher

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "stage1_loss.json"


def _pair(img_size: int = 32, **student_extra: object) -> tuple[Backbone, Teacher]:
    student = build_backbone(tiny_student(img_size, **student_extra))
    return student, build_teacher(tiny_teacher(img_size), student)


def _cfg(**kw: Any) -> Stage1Config:
    base: dict[str, Any] = {"steps": 4, "batch_size": 4, "image_size": 32, "teacher_precision": "fp32"}
    return Stage1Config(**{**base, **kw})


def test_patch_mask_covers_first_half_of_batch_with_half_the_positions() -> None:
    torch.manual_seed(0)
    mask = make_patch_mask(8, 16, 0.5, 0.5, torch.device("cpu"))
    assert mask.dtype == torch.bool and mask.shape == (8, 16)
    assert mask[:4].sum(1).tolist() == [8, 8, 8, 8]
    assert not mask[4:].any()
    assert len({tuple(r.tolist()) for r in mask[:4]}) > 1  # positions differ per image


def test_forward_returns_finite_losses_and_sums_them() -> None:
    torch.manual_seed(0)
    student, teacher = _pair()
    task = Stage1Task(student, teacher, _cfg(loss_weights={"cls": 1.0, "feat": 2.0, "mask": 0.5}))
    out = task({"image": torch.rand(4, 3, 32, 32)})
    assert set(out) == {"loss", "loss_cls", "loss_feat", "loss_mask"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in out.values())
    torch.testing.assert_close(out["loss"], out["loss_cls"] + 2 * out["loss_feat"] + 0.5 * out["loss_mask"])


def test_losses_match_an_explicit_two_view_computation(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    student, teacher = _pair()
    task = Stage1Task(student, teacher, _cfg())
    images = torch.rand(4, 3, 32, 32)
    calls: list[torch.Tensor | None] = []
    real = student.forward_tokens

    def spy(x: torch.Tensor, mask: torch.Tensor | None = None) -> Any:
        calls.append(None if mask is None else mask.clone())
        return real(x, mask)

    monkeypatch.setattr(student, "forward_tokens", spy)
    torch.manual_seed(5)
    out = task({"image": images})
    torch.manual_seed(5)
    expected_mask = make_patch_mask(4, 4, 0.5, 0.5, torch.device("cpu"))

    # One batched student call: clean rows unmasked, then the two masked images of the first half.
    assert len(calls) == 1 and calls[0] is not None
    assert not calls[0][:4].any() and torch.equal(calls[0][4:], expected_mask[:2])

    # Independent recomputation with two full student passes (the paper's formulation).
    with torch.no_grad():
        t = teacher(images)
        clean = real(images)
        masked = real(images, expected_mask)
        heads = task.heads
        p_cls = heads["cls"](clean.cls)
        p_feat = heads["feat"](clean.patches, t.patches)
        p_mask = heads["mask"](masked.patches, t.patches)
        l_cls = F.mse_loss(p_cls, t.cls)
        l_feat = F.mse_loss(torch.cat([p_cls[:, None], p_feat], 1), torch.cat([t.cls[:, None], t.patches], 1))
        l_mask = F.mse_loss(p_mask, t.patches)
    torch.testing.assert_close(out["loss_cls"], l_cls)
    torch.testing.assert_close(out["loss_feat"], l_feat)
    torch.testing.assert_close(out["loss_mask"], l_mask)


def test_stochastic_student_runs_both_views_in_full(monkeypatch: pytest.MonkeyPatch) -> None:
    student, teacher = _pair(drop_path_rate=0.1)
    task = Stage1Task(student, teacher, _cfg())
    masks: list[torch.Tensor | None] = []
    real = student.forward_tokens

    def spy(x: torch.Tensor, mask: torch.Tensor | None = None) -> Any:
        masks.append(mask)
        return real(x, mask)

    monkeypatch.setattr(student, "forward_tokens", spy)
    task({"image": torch.rand(4, 3, 32, 32)})
    assert masks[0] is None and masks[1] is not None and masks[1].shape == (4, 4)
    assert masks[1][:2].sum(1).tolist() == [2, 2] and not masks[1][2:].any()


def test_masked_only_loss_and_proteus_heads() -> None:
    torch.manual_seed(0)
    student, teacher = _pair()
    images = torch.rand(4, 3, 32, 32)
    masked_only = Stage1Task(student, teacher, _cfg(mask_loss_on="masked"))
    torch.manual_seed(1)
    out = masked_only({"image": images})
    torch.manual_seed(1)
    mask = make_patch_mask(4, 4, 0.5, 0.5, torch.device("cpu"))
    with torch.no_grad():
        t = teacher(images)
        pred = masked_only.heads["mask"](student.forward_tokens(images, mask).patches, t.patches)
        expected = (pred - t.patches).pow(2).mean(-1)[mask].mean()
    torch.testing.assert_close(out["loss_mask"], expected)
    proteus = Stage1Task(student, teacher, _cfg(head="linear"))
    assert type(proteus.heads["feat"]).__name__ == "ProjectionHead"
    assert torch.isfinite(proteus({"image": images})["loss"])


def test_teacher_stays_frozen_through_a_training_step() -> None:
    torch.manual_seed(0)
    student, teacher = _pair()
    task = Stage1Task(student, teacher, _cfg())
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opt = torch.optim.AdamW([p for p in task.parameters() if p.requires_grad], lr=1e-2)
    task.train()
    task({"image": torch.rand(4, 3, 32, 32)})["loss"].backward()
    opt.step()
    assert not teacher.backbone.training
    assert all(p.grad is None for p in teacher.parameters())
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert student.mask_token is not None and student.mask_token.grad is not None


def test_cnn_student_needs_mask_probability_zero() -> None:
    student = build_backbone(tiny_resnet(img_size=64))
    teacher = build_teacher(tiny_teacher(64), student)
    with pytest.raises(ConfigError, match="mask_probability=0"):
        Stage1Task(student, teacher, _cfg(image_size=64))
    task = Stage1Task(student, teacher, _cfg(image_size=64, mask_probability=0.0))
    out = task({"image": torch.rand(2, 3, 64, 64)})
    assert torch.isfinite(out["loss"])


def _golden_inputs() -> dict[str, float]:
    torch.manual_seed(1234)
    student, teacher = _pair()
    task = Stage1Task(student, teacher, _cfg())
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(99))
    torch.manual_seed(7)
    with torch.no_grad():
        out = task({"image": images})
    return {k: float(v) for k, v in out.items()}


def test_golden_loss() -> None:
    values = _golden_inputs()
    key = "qsd_vit_tiny_d2w32_dinov2_d2w48_32px_b4"
    stored: dict[str, Any] = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if os.environ.get("GKD_REGEN_GOLDEN") == "1":
        stored[key] = values
        GOLDEN.write_text(json.dumps(stored, indent=2, sort_keys=True) + "\n")
    if key not in stored:
        pytest.fail(f"golden value {key!r} missing from {GOLDEN}; regenerate with GKD_REGEN_GOLDEN=1")
    for name, value in values.items():
        assert value == pytest.approx(stored[key][name], rel=1e-4, abs=1e-6), name


def test_two_step_run_lowers_loss_with_fresh_heads_and_optimizer(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    student, teacher = _pair()
    tasks: list[Stage1Task] = []
    real_init = Stage1Task.__init__

    def recording_init(self: Stage1Task, *args: Any, **kwargs: Any) -> None:
        real_init(self, *args, **kwargs)
        tasks.append(self)

    monkeypatch.setattr(stage1_module.Stage1Task, "__init__", recording_init)
    images = [{"image": torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(i))} for i in range(2)]
    callbacks = RecordingCallbacks()
    cfg = _cfg(steps=12, lr=2e-3, checkpoint_every=0)
    proxy_cfg = _cfg(steps=3, lr=2e-3, checkpoint_every=0)
    result = run_stage1(student, teacher, cfg, source=images, proxy=images, proxy_cfg=proxy_cfg, callbacks=callbacks)

    assert list(result.results) == ["stage1a", "stage1b"] and result.student is student
    assert len(tasks) == 2 and tasks[0].student is tasks[1].student is student
    assert tasks[0].heads is not tasks[1].heads
    # A fresh cosine schedule per step, from the peak lr down to min_lr 1e-5 (no warmup).
    def cosine(k: int, steps: int) -> float:
        return 1e-5 + (2e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * k / steps))

    lr_a, lr_b = callbacks.values("lr", "stage1a"), callbacks.values("lr", "stage1b")
    assert [lr_a[k] for k in (1, 2, 3)] == pytest.approx([cosine(k, 3) for k in (1, 2, 3)], rel=1e-6)
    assert [lr_b[k] for k in (1, 6, 12)] == pytest.approx([cosine(k, 12) for k in (1, 6, 12)], rel=1e-6)
    losses = callbacks.values("loss", "stage1b")
    assert sum(losses[s] for s in (11, 12)) < 0.8 * sum(losses[s] for s in (1, 2))
    assert any("token grids" in e for e in callbacks.events)


def test_the_student_is_rebuilt_for_the_step_size() -> None:
    student, teacher = _pair()
    images = [{"image": torch.rand(2, 3, 64, 64)}]
    run_stage1(student, teacher, _cfg(image_size=64, steps=1, batch_size=2, checkpoint_every=0), source=images)
    assert student.img_size == 64 and student.grid_for(64) == (4, 4)


def test_stage1_needs_some_images_and_resolved_epochs() -> None:
    student, teacher = _pair()
    with pytest.raises(ConfigError, match="proxy images"):
        run_stage1(student, teacher, _cfg(), source=None)
    with pytest.raises(ConfigError, match="resolve epochs"):
        run_stage1(student, teacher, _cfg(epochs=2.0), source=[{"image": torch.rand(2, 3, 32, 32)}])


def test_finished_steps_are_not_rerun_and_restore_the_student(tmp_path: Path) -> None:
    torch.manual_seed(0)
    images = [{"image": torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))}]
    cfg = _cfg(steps=2, lr=1e-3, checkpoint_every=0)
    student, teacher = _pair()
    run_stage1(student, teacher, cfg, source=images, proxy=images, proxy_cfg=cfg, work_dir=tmp_path)
    fresh, fresh_teacher = _pair()
    callbacks = RecordingCallbacks()
    run_stage1(
        fresh, fresh_teacher, cfg, source=images, proxy=images, proxy_cfg=cfg, work_dir=tmp_path, callbacks=callbacks
    )
    assert sum("already finished" in e for e in callbacks.events) == 2
    for key, value in student.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key


def test_same_seed_gives_identical_losses_on_cpu() -> None:
    images = [{"image": torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(8))}]
    series = []
    for _ in range(2):
        torch.manual_seed(0)
        student, teacher = _pair()
        callbacks = RecordingCallbacks()
        run_stage1(student, teacher, _cfg(steps=3, checkpoint_every=0), source=images, callbacks=callbacks, seed=3)
        series.append(callbacks.values("loss", "stage1b"))
    assert series[0] == series[1] and len(series[0]) == 3


def test_bf16_autocast_step_is_finite_and_keeps_qsd_in_fp32() -> None:
    torch.manual_seed(0)
    student, teacher = _pair()
    task = Stage1Task(student, teacher, _cfg(teacher_precision="bf16"))
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = task({"image": torch.rand(4, 3, 32, 32)})
        keys = teacher(torch.rand(4, 3, 32, 32)).patches
        pred = task.heads["feat"](torch.randn(4, 4, 32), keys)
    assert pred.dtype == torch.float32 and keys.dtype == torch.float32
    assert all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    assert student.mask_token is not None and student.mask_token.grad is not None
    assert torch.isfinite(student.mask_token.grad).all()

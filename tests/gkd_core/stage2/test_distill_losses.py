"""Baseline distillation losses against independent hand computations on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from gkd_core.losses.distill_baselines import align_token_grid, cwd_loss, feature_mse_loss, kd_pixel_loss


def test_kd_is_zero_when_logits_match() -> None:
    z = torch.randn(2, 4, 3, 3)
    assert kd_pixel_loss(z, z.clone(), temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_kd_matches_scalar_loop_and_excludes_ignored_pixels() -> None:
    torch.manual_seed(0)
    zs, zt = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    target = torch.tensor([[[0, 255], [1, 2]], [[255, 255], [0, 1]]])
    t = 2.0
    total, count = 0.0, 0
    for b in range(2):
        for i in range(2):
            for j in range(2):
                if int(target[b, i, j]) == 255:
                    continue
                ps = [math.exp(float(zs[b, k, i, j]) / t) for k in range(3)]
                pt = [math.exp(float(zt[b, k, i, j]) / t) for k in range(3)]
                ps = [p / sum(ps) for p in ps]
                pt = [p / sum(pt) for p in pt]
                total += sum(pt[k] * math.log(pt[k] / ps[k]) for k in range(3))
                count += 1
    expected = t * t * total / count
    assert kd_pixel_loss(zs, zt, target, temperature=t).item() == pytest.approx(expected, rel=1e-5)
    # Changing the student only at ignored pixels leaves the loss unchanged.
    zs2 = zs.clone()
    zs2[1, :, 0, :] += 5.0
    assert kd_pixel_loss(zs2, zt, target, temperature=t).item() == pytest.approx(expected, rel=1e-5)


def test_kd_with_every_pixel_ignored_is_zero_not_nan() -> None:
    zs = torch.randn(1, 3, 2, 2, requires_grad=True)
    loss = kd_pixel_loss(zs, torch.randn(1, 3, 2, 2), torch.full((1, 2, 2), 255))
    loss.backward()
    assert loss.item() == 0.0


def _cwd_loop(s: torch.Tensor, t: torch.Tensor, temp: float) -> float:
    b, c = s.shape[0], s.shape[1]
    total = 0.0
    for bi in range(b):
        for ci in range(c):
            sv = [float(v) / temp for v in s[bi, ci].flatten()]
            tv = [float(v) / temp for v in t[bi, ci].flatten()]
            zs_ = sum(math.exp(v) for v in sv)
            zt_ = sum(math.exp(v) for v in tv)
            for a, d in zip(sv, tv, strict=True):
                ps, pt = math.exp(a) / zs_, math.exp(d) / zt_
                total += pt * math.log(pt / ps)
    return temp * temp * total / (c * b)


def test_cwd_matches_loop_implementation() -> None:
    torch.manual_seed(1)
    s, t = torch.randn(2, 3, 2, 3), torch.randn(2, 3, 2, 3)
    assert cwd_loss(s, t, temperature=4.0).item() == pytest.approx(_cwd_loop(s, t, 4.0), rel=1e-5)
    assert cwd_loss(s, t, temperature=1.0).item() == pytest.approx(_cwd_loop(s, t, 1.0), rel=1e-5)
    assert cwd_loss(t, t, temperature=2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_feature_mse_and_grid_alignment() -> None:
    a, b = torch.randn(2, 4, 3), torch.randn(2, 4, 3)
    assert feature_mse_loss(a, b).item() == pytest.approx(float(((a - b) ** 2).sum() / 24), rel=1e-6)
    tokens = torch.arange(4.0).view(1, 4, 1)  # 2x2 grid: [[0, 1], [2, 3]]
    assert torch.equal(align_token_grid(tokens, (2, 2), (2, 2)), tokens)
    up = align_token_grid(tokens, (2, 2), (4, 4))
    assert up.shape == (1, 16, 1)
    assert up[0, 0, 0].item() == 0.0 and up[0, 15, 0].item() == 3.0


def test_losses_reject_mismatched_shapes_and_bad_temperature() -> None:
    with pytest.raises(ValueError, match="shapes differ"):
        kd_pixel_loss(torch.randn(1, 3, 2, 2), torch.randn(1, 4, 2, 2))
    with pytest.raises(ValueError, match="temperature must be positive"):
        cwd_loss(torch.randn(1, 3, 2, 2), torch.randn(1, 3, 2, 2), temperature=0.0)
    with pytest.raises(ValueError, match="do not fill"):
        align_token_grid(torch.randn(1, 5, 2), (2, 2), (4, 4))

"""Mask2Former head: Hungarian matching, set loss, semantic inference, and that it learns a toy set."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from gkd_core.models.heads import build_head
from gkd_core.models.mask2former import Mask2FormerHead, linear_sum_assignment
from gkd_core.models.mask2former.criterion import SetCriterion, point_sample, semantic_targets

TINY = {"num_queries": 4, "num_layers": 2, "encoder_layers": 1, "num_points": 256}


def _brute_force(cost: np.ndarray) -> float:
    r, c = cost.shape
    if r <= c:
        return min(cost[range(r), list(p)].sum() for p in itertools.permutations(range(c), r))
    return min(cost[list(p), range(c)].sum() for p in itertools.permutations(range(r), c))


def test_matching_finds_the_optimum_where_greedy_fails() -> None:
    # Greedy takes (0, 0) at cost 1 and must then pay 100 for row 1; the optimum pays 2 + 3.
    cost = np.array([[1.0, 2.0, 50.0], [3.0, 100.0, 60.0]])
    rows, cols = linear_sum_assignment(cost)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]
    # Transposed (more rows than columns): every column gets its best distinct row.
    rows, cols = linear_sum_assignment(cost.T)
    assert rows.tolist() == [0, 1] and cols.tolist() == [1, 0]


def test_matching_agrees_with_brute_force() -> None:
    rng = np.random.default_rng(0)
    for trial in range(200):
        r, c = (int(v) for v in rng.integers(1, 6, size=2))
        cost = rng.normal(size=(r, c))
        if trial % 3 == 0:
            cost = np.round(cost)  # ties
        rows, cols = linear_sum_assignment(cost)
        assert len(rows) == min(r, c) == len(set(cols.tolist())) == len(set(rows.tolist()))
        assert cost[rows, cols].sum() == pytest.approx(_brute_force(cost), abs=1e-9)


def test_matching_edge_cases() -> None:
    rows, cols = linear_sum_assignment(np.zeros((5, 0)))
    assert rows.size == cols.size == 0
    cost = np.array([[np.inf, 1.0], [2.0, np.nan]])
    rows, cols = linear_sum_assignment(cost)
    assert cols.tolist() == [1, 0]
    with pytest.raises(ValueError, match="2-D"):
        linear_sum_assignment(np.zeros(3))


def test_semantic_targets_exclude_ignored_pixels() -> None:
    masks = torch.tensor([[[0, 0, 2], [255, 2, 2]], [[255, 255, 255], [255, 255, 255]]])
    first, empty = semantic_targets(masks, num_classes=3, ignore_index=255)
    assert first.labels.tolist() == [0, 2] and empty.count == 0
    # At pixel centres the samples are the binary masks and the valid map themselves.
    ys, xs = torch.meshgrid((torch.arange(2) + 0.5) / 2, (torch.arange(3) + 0.5) / 3, indexing="ij")
    centres = torch.stack((xs.flatten(), ys.flatten()), -1)[None]
    tgt, valid = first.targets_at(centres, first.labels)
    assert tgt.view(2, 2, 3)[0].tolist() == [[1, 1, 0], [0, 0, 0]]
    assert tgt.view(2, 2, 3)[1].tolist() == [[0, 0, 1], [0, 1, 1]]
    assert valid.view(2, 3).tolist() == [[1, 1, 1], [0, 1, 1]]
    with pytest.raises(ValueError, match=r"valid are 0\.\.2"):
        semantic_targets(torch.full((1, 2, 2), 7), num_classes=3, ignore_index=255)


def test_label_sampling_equals_grid_sample_of_the_binary_masks() -> None:
    """Corner-label sampling must give exactly the bilinear samples the published loss takes."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (1, 9, 13), generator=g)
    labels[0, 2:5, 3:8] = 255
    (target,) = semantic_targets(labels, num_classes=4, ignore_index=255)
    coords = torch.rand(3, 500, 2, generator=g) * 1.2 - 0.1  # some points beyond the border
    classes = target.labels[torch.tensor([0, 1, 2])]
    tgt, valid = target.targets_at(coords, classes)
    binary = (labels[0][None] == classes.view(-1, 1, 1)).float()[:, None]  # [3, 1, H, W]
    ok = (labels[0] != 255).float().expand(3, 1, -1, -1)
    votes = point_sample(binary, coords)[:, 0]
    ref_valid = point_sample(ok, coords)[:, 0]
    torch.testing.assert_close(valid, ref_valid, rtol=0, atol=1e-6)
    expected = torch.where(ref_valid > 0, votes / ref_valid.clamp_min(1e-6), torch.zeros_like(votes)).clamp(0, 1)
    torch.testing.assert_close(tgt, expected, rtol=0, atol=1e-5)


def test_matching_assigns_each_class_to_the_query_that_predicts_it() -> None:
    """Query 2 predicts class 1's region and label, query 0 class 0's: the matcher pairs them so."""
    masks = torch.zeros(1, 32, 32, dtype=torch.long)
    masks[0, :, 16:] = 1
    target = semantic_targets(masks, num_classes=2, ignore_index=255)
    logits = torch.full((1, 3, 3), -10.0)
    mask_logits = torch.full((1, 3, 32, 32), -10.0)
    logits[0, 0, 0], mask_logits[0, 0, :, :16] = 10.0, 10.0
    logits[0, 2, 1], mask_logits[0, 2, :, 16:] = 10.0, 10.0
    logits[0, 1, 2] = 10.0  # query 1 says "no object"
    crit = SetCriterion(2, num_points=2048, importance=0.0)
    ((q, k),) = crit.match(logits, mask_logits, target)
    assert dict(zip(k.tolist(), q.tolist(), strict=True)) == {0: 0, 1: 2}
    # Near-perfect predictions: only the one-pixel bilinear seam between the halves costs anything.
    perfect = crit.layer_losses(logits, mask_logits, target)
    assert perfect["mask"].item() < 0.1 and perfect["dice"].item() < 0.05 and perfect["cls"].item() < 1e-3
    swapped = crit.layer_losses(logits, mask_logits.flip(-1), target)
    assert swapped["cls"].item() > 1.0  # the masks now fit the other query's class


def test_loss_ignores_predictions_on_ignored_pixels() -> None:
    """With uniform points (no importance sampling) and a fixed seed, changing the mask logits deep
    inside the ignored region changes neither the matching nor any loss term."""
    masks = torch.randint(0, 3, (2, 16, 16))
    masks[:, 4:12, 4:12] = 255
    targets = semantic_targets(masks, num_classes=3, ignore_index=255)
    crit = SetCriterion(3, num_points=400, oversample=1.0, importance=0.0)
    logits, mask_logits = torch.randn(2, 5, 4), torch.randn(2, 5, 16, 16)
    changed = mask_logits.clone()
    changed[:, :, 6:10, 6:10] += 10.0  # a margin of 2 px: no bilinear footprint reaches a valid pixel
    torch.manual_seed(0)
    a = crit([logits], [mask_logits], targets)
    torch.manual_seed(0)
    b = crit([logits], [changed], targets)
    for key in ("loss", "cls", "mask", "dice"):
        assert torch.equal(a[key], b[key]), key


def test_loss_parts_and_no_labels() -> None:
    torch.manual_seed(0)
    head = build_head("mask2former", [8, 8, 8, 8], 3, channels=16, **TINY)
    feats = [torch.randn(2, 8, 32 // s, 32 // s) for s in (4, 8, 16, 32)]
    masks = torch.randint(0, 3, (2, 32, 32))
    out = head.loss(feats, masks)
    assert set(out) == {"loss", "cls", "mask", "dice", "aux"}
    total = out["cls"] + out["mask"] + out["dice"] + out["aux"]
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-5)
    assert out["loss"].requires_grad and not out["aux"].requires_grad
    ignored = head.loss(feats, torch.full((2, 32, 32), 255))
    assert torch.isfinite(ignored["loss"]) and ignored["mask"].item() == 0.0 and ignored["dice"].item() == 0.0
    ignored["loss"].backward()  # only the no-object class term: still a valid graph


def test_semantic_inference_is_class_probability_times_mask_probability() -> None:
    torch.manual_seed(0)
    head = build_head("mask2former", [8, 8, 8, 8], 3, channels=16, **TINY).eval()
    assert isinstance(head, Mask2FormerHead)
    feats = [torch.randn(2, 8, 32 // s, 32 // s) for s in (4, 8, 16, 32)]
    with torch.no_grad():
        logits, masks = head.predict_sets(feats)
        expected = torch.einsum("bqc,bqhw->bchw", logits[-1].softmax(-1)[..., :-1], masks[-1].sigmoid())
        assert len(logits) == TINY["num_layers"] + 1  # before the first layer and after each
        torch.testing.assert_close(head(feats), expected)
        assert head(feats, (32, 32)).shape == (2, 3, 32, 32)


def test_loss_falls_on_a_toy_set() -> None:
    """Features that carry the label (a noisy one-hot map) must be learnable within a few dozen steps."""
    torch.manual_seed(0)
    masks = torch.zeros(4, 32, 32, dtype=torch.long)
    masks[:, :, 16:] = 1
    masks[1:3, 8:20, 4:12] = 2
    masks[:, 0, :] = 255
    onehot = torch.nn.functional.one_hot(masks.clamp(max=2), 3).permute(0, 3, 1, 2).float()
    feats = [
        torch.nn.functional.avg_pool2d(onehot, s).repeat(1, 3, 1, 1) + 0.1 * torch.randn(4, 9, 32 // s, 32 // s)
        for s in (4, 8, 16, 32)
    ]
    head = build_head("mask2former", [9] * 4, 3, channels=32, **TINY)
    opt = torch.optim.AdamW(head.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        out = head.loss(feats, masks)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    head.eval()
    with torch.no_grad():
        pred = head(feats, (32, 32)).argmax(1)
    valid = masks != 255
    assert (pred[valid] == masks[valid]).float().mean().item() > 0.9


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)],
)
def test_bf16_autocast_loss_and_inference(device: str) -> None:
    """Under bf16 autocast the set loss stays finite and float32, and gradients reach every parameter."""
    torch.manual_seed(0)
    head = build_head("mask2former", [8, 8, 8, 8], 3, channels=16, **TINY).to(device)
    feats = [torch.randn(2, 8, 64 // s, 64 // s, device=device) for s in (4, 8, 16, 32)]
    masks = torch.randint(0, 3, (2, 64, 64), device=device)
    masks[:, :4] = 255
    with torch.autocast(device_type=device, dtype=torch.bfloat16):
        out = head.loss(feats, masks)
        scores = head.eval()(feats, (64, 64))
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    assert scores.shape == (2, 3, 64, 64) and torch.isfinite(scores).all()

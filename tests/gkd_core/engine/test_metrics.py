"""Confusion-matrix mIoU against an independent per-class loop and hand-made cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gkd_core.engine import ConfusionMatrix, SegMetrics


def _reference(preds: list[np.ndarray], targets: list[np.ndarray], k: int, ignore: int) -> dict[str, object]:
    """Per-class set counting with NumPy loops: a different route to the same definitions."""
    ious: list[float | None] = []
    for c in range(k):
        inter = union = 0
        for p, t in zip(preds, targets, strict=True):
            valid = t != ignore
            inter += int(np.logical_and(p == c, t == c)[valid].sum())
            union += int(np.logical_or(p == c, t == c)[valid].sum())
        ious.append(None if union == 0 else inter / union)
    correct = sum(int(((p == t) & (t != ignore)).sum()) for p, t in zip(preds, targets, strict=True))
    labelled = sum(int((t != ignore).sum()) for t in targets)
    present = [v for v in ious if v is not None]
    return {"miou": sum(present) / len(present), "per_class_iou": ious, "pixel_accuracy": correct / labelled}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_independent_numpy_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    k = 6
    cm = ConfusionMatrix(k)
    preds, targets = [], []
    for _ in range(3):
        target = rng.integers(0, k - 1, size=(2, 17, 13))  # class k-1 never in the target
        target[rng.random(target.shape) < 0.2] = 255
        pred = np.where(rng.random(target.shape) < 0.6, target, rng.integers(0, k - 2, size=target.shape))
        pred[pred == 255] = 0
        preds.append(pred)
        targets.append(target)
        cm.update(torch.from_numpy(pred), torch.from_numpy(target))
    got = cm.compute()
    want = _reference(preds, targets, k, 255)
    assert got.images == 6
    assert abs(got.miou - want["miou"]) < 1e-6  # type: ignore[operator]
    assert abs(got.pixel_accuracy - want["pixel_accuracy"]) < 1e-6  # type: ignore[operator]
    for a, b in zip(got.per_class_iou, want["per_class_iou"], strict=True):  # type: ignore[call-overload]
        assert (a is None) == (b is None)
        if a is not None:
            assert abs(a - b) < 1e-6
    assert got.per_class_iou[k - 1] is None  # absent from target and prediction


def test_perfect_prediction_is_one() -> None:
    target = torch.tensor([[0, 1], [2, 255]])
    cm = ConfusionMatrix(4)
    cm.update(target.clone(), target)
    m = cm.compute()
    assert m.miou == 1.0 and m.pixel_accuracy == 1.0 and m.per_class_iou == [1.0, 1.0, 1.0, None]


def test_hand_made_case_with_ignore_and_false_positive_class() -> None:
    target = torch.tensor([[0, 0, 1, 255]])
    pred = torch.tensor([[0, 2, 1, 1]])  # the ignored pixel's prediction must not count
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    m = cm.compute()
    # class 0: TP 1, FN 1 -> 1/2; class 1: TP 1 -> 1; class 2: FP 1, never in target -> 0.
    assert m.per_class_iou == [0.5, 1.0, 0.0]
    assert m.miou == pytest.approx(0.5)
    assert m.pixel_accuracy == pytest.approx(2 / 3)
    assert m.images == 1


def test_logits_merge_and_json() -> None:
    target = torch.tensor([[[0, 1], [1, 1]]])
    logits = torch.zeros(1, 2, 2, 2)
    logits[:, 1] = 1.0  # predicts class 1 everywhere
    a, b = ConfusionMatrix(2), ConfusionMatrix(2)
    a.update(logits, target)
    b.update(target.clone(), target)
    merged = a.merge(b).compute()
    assert merged.images == 2
    assert merged.per_class_iou == pytest.approx([0.5, 6 / 7])
    restored = SegMetrics.from_dict(json.loads(json.dumps(merged.to_dict())))
    assert restored == merged


def test_bad_input_is_rejected() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="does not match"):
        cm.update(torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"0\.\.2"):
        cm.update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 7))
    with pytest.raises(ValueError, match="empty"):
        ConfusionMatrix(3).compute()
    with pytest.raises(ValueError, match="collides"):
        ConfusionMatrix(3, ignore_index=1)
    with pytest.raises(ValueError, match="merge"):
        cm.merge(ConfusionMatrix(4))


def test_all_ignored_batch_adds_no_pixels() -> None:
    cm = ConfusionMatrix(2)
    cm.update(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 255))
    assert int(cm.matrix.sum()) == 0 and cm.images == 1

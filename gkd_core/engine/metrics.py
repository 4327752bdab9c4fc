"""Semantic-segmentation metrics from a confusion matrix: mIoU, per-class IoU, pixel accuracy.

The paper reports mIoU per target domain (METHOD.md). IoU_c = TP_c / (TP_c + FP_c + FN_c) over
all evaluated pixels of the domain (not averaged per image); pixels whose target is the ignore
index are skipped. A class absent from both prediction and target has no IoU (None) and is left
out of the mean, as in the usual Cityscapes evaluation. Values are fractions in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class SegMetrics:
    """Metrics of one evaluation (one domain)."""

    miou: float
    per_class_iou: list[float | None]
    pixel_accuracy: float
    images: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (plain floats, None for classes without IoU)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegMetrics:
        """Inverse of ``to_dict``."""
        return cls(
            miou=float(data["miou"]),
            per_class_iou=[None if v is None else float(v) for v in data["per_class_iou"]],
            pixel_accuracy=float(data["pixel_accuracy"]),
            images=int(data["images"]),
        )


class ConfusionMatrix:
    """Accumulates a num_classes x num_classes matrix (rows: target, columns: prediction).

    ``update`` runs on the device of its inputs with one ``bincount``, so evaluation on a GPU
    never copies masks to the host.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if 0 <= ignore_index < num_classes:
            raise ValueError(f"ignore_index {ignore_index} collides with a class id (0..{num_classes - 1})")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix: torch.Tensor = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.images = 0

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self.matrix = torch.zeros_like(self.matrix)
        self.images = 0

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: ``pred`` as class ids shaped like ``target`` (B,H,W or H,W) or as logits
        with the class dimension at 1 (B,K,H,W); ``target`` holds class ids or ``ignore_index``.

        Raises:
            ValueError: shapes disagree, or a label lies outside 0..num_classes-1 (and is not ignored).
        """
        if pred.ndim == target.ndim + 1:
            if pred.shape[1] != self.num_classes:
                raise ValueError(f"logits have {pred.shape[1]} channels, expected num_classes={self.num_classes}")
            pred = pred.argmax(dim=1)
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
        if target.ndim not in (2, 3):
            raise ValueError(f"expected H,W or B,H,W masks, got shape {tuple(target.shape)}")
        if pred.is_floating_point() or target.is_floating_point():
            raise ValueError("pred and target must hold integer class ids (pass logits with a class dimension)")
        images = 1 if target.ndim == 2 else target.shape[0]
        target = target.reshape(-1).long()
        pred = pred.reshape(-1).to(device=target.device, dtype=torch.long)
        keep = target != self.ignore_index
        target, pred = target[keep], pred[keep]
        k = self.num_classes
        if target.numel():
            lo, hi = int(torch.minimum(target.min(), pred.min())), int(torch.maximum(target.max(), pred.max()))
            if lo < 0 or hi >= k:
                raise ValueError(f"labels must lie in 0..{k - 1} or be {self.ignore_index}; found values in {lo}..{hi}")
        counts = torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)
        if self.matrix.device != counts.device:
            self.matrix = self.matrix.to(counts.device)
        self.matrix += counts
        self.images += images

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts (e.g. from another process or shard); returns self."""
        if other.num_classes != self.num_classes or other.ignore_index != self.ignore_index:
            raise ValueError(
                f"cannot merge a {other.num_classes}-class matrix (ignore {other.ignore_index}) into a "
                f"{self.num_classes}-class one (ignore {self.ignore_index})"
            )
        self.matrix += other.matrix.to(self.matrix.device)
        self.images += other.images
        return self

    def compute(self) -> SegMetrics:
        """mIoU over classes present in prediction or target, per-class IoU and pixel accuracy.

        Raises:
            ValueError: nothing was accumulated (no labelled pixel), so no metric exists.
        """
        m = self.matrix.double().cpu()
        total = m.sum()
        if total == 0:
            raise ValueError("the confusion matrix is empty: no labelled (non-ignored) pixel was evaluated")
        tp = m.diag()
        union = m.sum(0) + m.sum(1) - tp
        per_class: list[float | None] = [None if u == 0 else float(t / u) for t, u in zip(tp, union, strict=True)]
        present = [v for v in per_class if v is not None]
        return SegMetrics(
            miou=float(sum(present) / len(present)),
            per_class_iou=per_class,
            pixel_accuracy=float(tp.sum() / total),
            images=self.images,
        )

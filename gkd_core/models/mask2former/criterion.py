"""Mask2Former's set-prediction loss for semantic segmentation, with point-sampled mask terms.

Cheng et al. (CVPR 2022), sections 3.2-3.3, as configured in mmseg: every prediction set (before
the first decoder layer and after each) is matched one-to-one to the classes present in each
image (Hungarian matching on 2 x class cost + 5 x mask BCE cost + 5 x Dice cost, the mask costs
on 12,544 uniformly sampled points); then

- class: cross-entropy over ``K + 1`` outputs, every unmatched query's target is "no object",
  weighted 0.1 (mean weighted by the class weights), loss weight 2;
- mask: BCE on 12,544 points per matched mask, picked by importance sampling (3x oversampled
  uniform candidates, the 75% most uncertain, |logit| smallest, plus 25% uniform), loss weight 5;
- dice: Dice (eps 1, plain sums) on the same points, loss weight 5.

Targets are per-class binary masks from the semantic label map. Ignored pixels are excluded
rather than counted as background (mmseg would make them background in every mask): each sampled
point carries the fraction of valid pixels under its bilinear footprint as a weight, and the
target is renormalised over the valid pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from gkd_core.models.mask2former.matching import linear_sum_assignment


@dataclass(frozen=True)
class ImageTargets:
    """One image's label map and the classes present in it (each one target mask)."""

    labels: Tensor  # [K] long, the classes present
    label_map: Tensor  # [H, W] long
    ignore_index: int

    @property
    def count(self) -> int:
        return int(self.labels.numel())

    def targets_at(self, coords: Tensor, classes: Tensor) -> tuple[Tensor, Tensor]:
        """Bilinear samples of binary class masks and of the valid-pixel map at ``coords [N|1, P, 2]``.

        ``classes [N]`` picks one class per row. Returns the targets renormalised over valid pixels
        ``[N, P]`` and the valid fractions ``[N|1, P]``. The values equal ``grid_sample`` (bilinear, zero
        padding, ``align_corners=False``) of the binary maps, computed from the four corner labels
        of each point, so no full-resolution mask is ever materialised.
        """
        h, w = self.label_map.shape
        x = coords[..., 0] * w - 0.5
        y = coords[..., 1] * h - 0.5
        x0, y0 = x.floor(), y.floor()
        fx, fy = x - x0, y - y0
        xs = torch.stack((x0, x0 + 1, x0, x0 + 1), dim=-1)
        ys = torch.stack((y0, y0, y0 + 1, y0 + 1), dim=-1)
        weights = torch.stack(((1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy), dim=-1)
        inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
        corner = self.label_map[ys.clamp(0, h - 1).long(), xs.clamp(0, w - 1).long()]  # [N|1, P, 4]
        weights = weights * inside
        valid = (weights * (corner != self.ignore_index)).sum(-1)
        votes = (weights * (corner == classes.view(-1, 1, 1))).sum(-1)
        return _valid_average(votes, valid), valid


def semantic_targets(masks: Tensor, num_classes: int, ignore_index: int) -> list[ImageTargets]:
    """One :class:`ImageTargets` per semantic label map of ``masks [B, H, W]`` (ignored pixels excluded)."""
    out = []
    for m in masks.long():
        labels = torch.unique(m[m != ignore_index])
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(
                f"label map holds classes {labels.tolist()}; valid are 0..{num_classes - 1} and {ignore_index} (ignore)"
            )
        out.append(ImageTargets(labels, m, ignore_index))
    return out


def point_sample(maps: Tensor, coords: Tensor) -> Tensor:
    """Bilinear values of ``maps [N, C, H, W]`` at ``coords [N, P, 2]`` ((x, y) in [0, 1]): ``[N, C, P]``."""
    grid = (2.0 * coords - 1.0).unsqueeze(2).to(maps.dtype)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False).squeeze(3)


def importance_points(logits: Tensor, num_points: int, oversample: float, importance: float) -> Tensor:
    """Point coords ``[N, num_points, 2]`` for mask logits ``[N, 1, h, w]`` (PointRend's training rule)."""
    n = logits.shape[0]
    candidates = torch.rand(n, int(num_points * oversample), 2, device=logits.device)
    uncertainty = -point_sample(logits, candidates).squeeze(1).abs()
    k = int(importance * num_points)
    idx = uncertainty.topk(k, dim=1).indices
    chosen = candidates.gather(1, idx.unsqueeze(-1).expand(-1, -1, 2))
    rest = torch.rand(n, num_points - k, 2, device=logits.device)
    return torch.cat((chosen, rest), dim=1)


def _valid_average(targets: Tensor, weights: Tensor) -> Tensor:
    """Targets averaged over valid pixels only: sample / valid fraction (0 where nothing is valid)."""
    return torch.where(weights > 0, targets / weights.clamp_min(1e-6), torch.zeros_like(targets)).clamp(0.0, 1.0)


class SetCriterion:
    """Matching + loss over every prediction set; weights and sampling as the published config.

    Args:
        num_classes: K (class logits have K + 1 outputs; the last is "no object").
        class_weight, mask_weight, dice_weight: loss (and matching cost) weights: 2, 5, 5.
        no_object_weight: cross-entropy weight of the "no object" class: 0.1.
        num_points: sampled points per mask: 12,544 (112 x 112).
        oversample: uniform candidates per point for importance sampling: 3.0.
        importance: fraction of points taken where the prediction is most uncertain: 0.75.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        no_object_weight: float = 0.1,
        num_points: int = 12544,
        oversample: float = 3.0,
        importance: float = 0.75,
    ) -> None:
        self.num_classes = num_classes
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        self.no_object_weight = no_object_weight
        self.num_points, self.oversample, self.importance = num_points, oversample, importance

    @torch.no_grad()
    def match_costs(self, logits: Tensor, masks: Tensor, target: ImageTargets) -> Tensor:
        """Cost ``[Q, K]`` of giving each query each target of one image (lower is better)."""
        coords = torch.rand(1, self.num_points, 2, device=masks.device)
        pred = point_sample(masks[None], coords)[0]  # [Q, P]
        tgt, w = target.targets_at(coords, target.labels)  # [K, P] and [1, P]
        cls_cost = -logits.softmax(-1)[:, target.labels]
        # Pairwise BCE, sum_p w * (t * softplus(-x) + (1 - t) * softplus(x)) / sum_p w, with
        # softplus(-x) = softplus(x) - x: one softplus and one product.
        neg = F.softplus(pred) * w
        bce_cost = ((-pred * w) @ tgt.T + neg.sum(-1, keepdim=True)) / w.sum().clamp_min(1e-6)
        # Dice with plain sums and eps 1 (mmdet's naive Dice).
        prob = pred.sigmoid() * w
        dice_cost = 1.0 - (2.0 * prob @ tgt.T + 1.0) / (prob.sum(-1, keepdim=True) + (tgt * w).sum(-1)[None] + 1.0)
        return self.class_weight * cls_cost + self.mask_weight * bce_cost + self.dice_weight * dice_cost

    def match(self, logits: Tensor, masks: Tensor, targets: Sequence[ImageTargets]) -> list[tuple[Tensor, Tensor]]:
        """(query indices, target indices) per image for one prediction set ``[B, Q, K+1]``, ``[B, Q, h, w]``."""
        costs = [self.match_costs(logits[b], masks[b], t) for b, t in enumerate(targets)]
        # One device-to-host copy for the whole batch instead of one per image.
        flat = torch.cat([c.flatten() for c in costs]).cpu().numpy()
        out, start = [], 0
        for c in costs:
            q, k = c.shape
            rows, cols = linear_sum_assignment(flat[start : start + q * k].reshape(q, k))
            start += q * k
            out.append((torch.as_tensor(rows, device=masks.device), torch.as_tensor(cols, device=masks.device)))
        return out

    def layer_losses(self, logits: Tensor, masks: Tensor, targets: Sequence[ImageTargets]) -> dict[str, Tensor]:
        """Unweighted class, mask (BCE) and Dice losses of one prediction set."""
        logits, masks = logits.float(), masks.float()
        matches = self.match(logits, masks, targets)
        labels = torch.full(logits.shape[:2], self.num_classes, dtype=torch.long, device=logits.device)
        for b, ((q, k), t) in enumerate(zip(matches, targets, strict=True)):
            labels[b, q] = t.labels[k]
        class_w = torch.ones(self.num_classes + 1, device=logits.device)
        class_w[-1] = self.no_object_weight
        loss_cls = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), weight=class_w)

        pred = torch.cat([masks[b, q] for b, (q, _) in enumerate(matches)])  # [M, h, w]
        if pred.shape[0] == 0:
            zero = masks.sum() * 0.0
            return {"cls": loss_cls, "mask": zero, "dice": zero}
        with torch.no_grad():
            coords = importance_points(pred.unsqueeze(1), self.num_points, self.oversample, self.importance)
            tgt, w = self._sample_targets(matches, targets, coords)
        x = point_sample(pred.unsqueeze(1), coords).squeeze(1)  # [M, P]
        valid = w.sum(-1).clamp_min(1e-6)
        bce = (F.binary_cross_entropy_with_logits(x, tgt, reduction="none") * w).sum(-1) / valid
        prob = x.sigmoid() * w
        dice = 1.0 - (2.0 * (prob * tgt).sum(-1) + 1.0) / (prob.sum(-1) + (tgt * w).sum(-1) + 1.0)
        return {"cls": loss_cls, "mask": bce.mean(), "dice": dice.mean()}

    @staticmethod
    def _sample_targets(
        matches: Sequence[tuple[Tensor, Tensor]], targets: Sequence[ImageTargets], coords: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Target values and valid weights ``[M, P]`` at each matched mask's own points."""
        tgts, weights, start = [], [], 0
        for (_, k), t in zip(matches, targets, strict=True):
            n = int(k.numel())
            tgt, w = t.targets_at(coords[start : start + n], t.labels[k])
            start += n
            tgts.append(tgt)
            weights.append(w)
        return torch.cat(tgts), torch.cat(weights)

    def __call__(
        self, all_logits: Sequence[Tensor], all_masks: Sequence[Tensor], targets: Sequence[ImageTargets]
    ) -> dict[str, Tensor]:
        """Total loss over every prediction set, the last set's weighted parts, and the rest as ``aux``.

        ``loss = cls + mask + dice + aux``; each part is already multiplied by its weight.
        """
        total = None
        aux = None
        last: dict[str, Tensor] = {}
        for i, (logits, masks) in enumerate(zip(all_logits, all_masks, strict=True)):
            parts = self.layer_losses(logits, masks, targets)
            weighted = {
                "cls": self.class_weight * parts["cls"],
                "mask": self.mask_weight * parts["mask"],
                "dice": self.dice_weight * parts["dice"],
            }
            layer_total = weighted["cls"] + weighted["mask"] + weighted["dice"]
            total = layer_total if total is None else total + layer_total
            if i == len(all_logits) - 1:
                last = weighted
            else:
                aux = layer_total if aux is None else aux + layer_total
        if total is None:
            raise ValueError("the criterion needs at least one prediction set")
        out = {"loss": total, **{k: v.detach() for k, v in last.items()}}
        out["aux"] = aux.detach() if aux is not None else total.new_zeros(())
        return out

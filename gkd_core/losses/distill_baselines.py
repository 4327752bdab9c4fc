"""Distillation losses of the single-stage baselines (METHOD.md, "Baselines"): KD, CWD, feature MSE.

These are the comparison rows GKD is measured against; each is added to the task cross-entropy.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def _check_same_shape(student: Tensor, teacher: Tensor, what: str) -> None:
    if student.shape != teacher.shape:
        raise ValueError(f"{what}: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} shapes differ")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")


def kd_pixel_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    target: Tensor | None = None,
    temperature: float = 1.0,
    ignore_index: int = 255,
) -> Tensor:
    """Hinton KD per pixel: ``T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``, mean over labelled pixels.

    Logits are ``[B, K, H, W]``; ``target`` ``[B, H, W]`` marks pixels to exclude with ``ignore_index``
    (None keeps every pixel). Returns 0 (with a gradient path) when no pixel is kept.
    """
    _check_same_shape(student_logits, teacher_logits, "kd_pixel_loss")
    _check_temperature(temperature)
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)  # [B, H, W]
    if target is None:
        return kl.mean() * temperature**2
    if target.shape != kl.shape:
        raise ValueError(f"kd_pixel_loss: target {tuple(target.shape)} does not match logits {tuple(kl.shape)}")
    keep = target != ignore_index
    count = keep.sum()
    if int(count) == 0:
        return kl.sum() * 0.0
    return (kl * keep).sum() / count * temperature**2


def cwd_loss(student_map: Tensor, teacher_map: Tensor, temperature: float = 4.0) -> Tensor:
    """Channel-wise distillation (Shu et al.): per channel, a softmax over spatial positions.

    ``T^2 / (C * B) * sum_{b,c} KL(softmax(t_bc / T) || softmax(s_bc / T))`` with maps ``[B, C, H, W]``
    (logits or an aligned feature map).
    """
    _check_same_shape(student_map, teacher_map, "cwd_loss")
    _check_temperature(temperature)
    b, c = int(student_map.shape[0]), int(student_map.shape[1])
    s = student_map.float().flatten(2) / temperature
    t = teacher_map.float().flatten(2) / temperature
    log_p_s = F.log_softmax(s, dim=2)
    log_p_t = F.log_softmax(t, dim=2)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum()
    return kl * temperature**2 / (c * b)


def align_token_grid(tokens: Tensor, grid: tuple[int, int], target_grid: tuple[int, int]) -> Tensor:
    """Resize a ``[B, N, C]`` token map laid out on ``grid`` to ``target_grid`` (bilinear)."""
    b, n, c = tokens.shape
    if grid[0] * grid[1] != n:
        raise ValueError(f"{n} tokens do not fill a {grid[0]}x{grid[1]} grid")
    if tuple(grid) == tuple(target_grid):
        return tokens
    fmap = tokens.transpose(1, 2).reshape(b, c, grid[0], grid[1])
    fmap = F.interpolate(fmap, size=target_grid, mode="bilinear", align_corners=False)
    return fmap.flatten(2).transpose(1, 2)


class FeatureProjector(nn.Module):
    """LayerNorm + Linear from student width to teacher width, for the feature-MSE baseline."""

    def __init__(self, student_dim: int, teacher_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(student_dim)
        self.proj = nn.Linear(student_dim, teacher_dim)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.proj(self.norm(tokens))


def feature_mse_loss(projected_student: Tensor, teacher_tokens: Tensor) -> Tensor:
    """Mean squared error between projected student tokens and grid-aligned teacher tokens."""
    _check_same_shape(projected_student, teacher_tokens, "feature_mse_loss")
    return F.mse_loss(projected_student.float(), teacher_tokens.float())


__all__ = [
    "FeatureProjector",
    "align_token_grid",
    "cwd_loss",
    "feature_mse_loss",
    "kd_pixel_loss",
]

"""Linear CKA: how alike two sets of features of the same inputs are, whatever their widths.

Centered kernel alignment with a linear kernel (Kornblith, Norouzi, Lee and Hinton, "Similarity of
Neural Network Representations Revisited", ICML 2019): for row-aligned features X (n x p) and Y
(n x q), centred over rows, CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F). It is invariant to
orthogonal transforms and isotropic scaling, so a student's features can be compared with a wider
teacher's without a learned projection.
"""

from __future__ import annotations

import torch


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA in [0, 1] between ``x`` (n x p) and ``y`` (n x q), rows being the same inputs.

    Raises:
        ValueError: shapes that are not 2-D with the same number of rows, or fewer than two rows.
    """
    if x.ndim != 2 or y.ndim != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"need n x p and n x q features, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] < 2:
        raise ValueError("linear CKA needs at least two rows")
    x = x.double() - x.double().mean(dim=0, keepdim=True)
    y = y.double() - y.double().mean(dim=0, keepdim=True)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    norms = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    if float(norms) == 0.0:  # a constant feature set carries no structure to compare
        return 0.0
    return float(cross / norms)

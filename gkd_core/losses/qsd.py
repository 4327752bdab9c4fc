"""Query-based soft distillation (QSD) heads of GKD stage 1 (Lv et al., CVPR 2026, Sec. 3.2).

For student tokens S (B x N x Cs) and raw teacher tokens T (B x N x Ct)::

    q = Linear(LayerNorm(S))      # query projection to the teacher width
    v = Linear(LayerNorm(S))      # a second, separate projection (values come from the student)
    A = softmax(q @ T^T)          # keys are the raw teacher tokens; no 1/sqrt(d); one head
    out = A @ v                   # regressed onto T with MSE

With A = I the head reduces to a plain projection head (the Proteus variant, :class:`ProjectionHead`).
For the CLS token (N = 1) the softmax is 1, so the CLS head is LayerNorm + Linear.
"""

from __future__ import annotations

import torch
from torch import nn


class ProjectionHead(nn.Module):
    """LayerNorm + Linear from the student width to the teacher width (CLS head; Proteus heads)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, out_dim)

    def forward(self, s: torch.Tensor, teacher: torch.Tensor | None = None) -> torch.Tensor:
        """Project student tokens; ``teacher`` is accepted (and unused) so heads are interchangeable."""
        return self.proj(self.norm(s))


def qsd_attention(q: torch.Tensor, keys: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q @ keys^T) @ v with no scaling and one head, computed in fp32 for a stable softmax."""
    if q.shape[1] != keys.shape[1] or v.shape[1] != keys.shape[1]:
        raise ValueError(
            f"QSD needs equal student and teacher token counts, got student {q.shape[1]} and teacher {keys.shape[1]}; "
            "align the teacher grid to the student first"
        )
    # Unscaled logits of wide teacher tokens are large: keep this block in fp32 even under autocast.
    with torch.autocast(device_type=q.device.type, enabled=False):
        logits = torch.matmul(q.float(), keys.float().transpose(1, 2))  # B x N x N
        attn = logits.softmax(dim=-1)
        return torch.matmul(attn, v.float())


class QSDHead(nn.Module):
    """One query-based soft distillation head (see module docstring)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.q_norm = nn.LayerNorm(in_dim)
        self.q_proj = nn.Linear(in_dim, out_dim)
        self.v_norm = nn.LayerNorm(in_dim)
        self.v_proj = nn.Linear(in_dim, out_dim)

    def forward(self, s: torch.Tensor, teacher: torch.Tensor | None = None) -> torch.Tensor:
        """Map student tokens (B x N x Cs) to the teacher space using raw teacher tokens as keys."""
        if teacher is None:
            raise ValueError("QSDHead needs the teacher tokens as keys")
        q = self.q_proj(self.q_norm(s))
        v = self.v_proj(self.v_norm(s))
        return qsd_attention(q, teacher.detach(), v)


TOKEN_HEADS: dict[str, type[nn.Module]] = {"qsd": QSDHead, "linear": ProjectionHead}
"""Stage-1 patch-token heads by name: QSD (GKD) and LayerNorm + Linear (Proteus, two-stage MSE)."""


def build_token_head(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """A patch-token head registered in :data:`TOKEN_HEADS`."""
    try:
        head = TOKEN_HEADS[kind]
    except KeyError:
        raise ValueError(f"unknown stage-1 head {kind!r}; valid: {tuple(TOKEN_HEADS)}") from None
    return head(in_dim, out_dim)

"""QSD heads against an independent float64 hand computation, and the identity-attention property."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gkd_core.losses import ProjectionHead, QSDHead, build_token_head


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def test_qsd_matches_hand_computation() -> None:
    torch.manual_seed(0)
    b, n, cs, ct = 2, 5, 6, 4
    head = QSDHead(cs, ct)
    for p in head.parameters():  # non-trivial LayerNorm affine too
        torch.nn.init.normal_(p, std=0.5)
    s = torch.randn(b, n, cs)
    t = torch.randn(b, n, ct)
    out = head(s, t)

    q = _layer_norm(_np(s), _np(head.q_norm.weight), _np(head.q_norm.bias), head.q_norm.eps)
    q = q @ _np(head.q_proj.weight).T + _np(head.q_proj.bias)
    v = _layer_norm(_np(s), _np(head.v_norm.weight), _np(head.v_norm.bias), head.v_norm.eps)
    v = v @ _np(head.v_proj.weight).T + _np(head.v_proj.bias)
    keys = _np(t)
    expected = np.zeros((b, n, ct))
    for bi in range(b):
        for i in range(n):
            # one head, raw teacher tokens as keys, no 1/sqrt(d) scaling
            logits = [sum(q[bi, i, c] * keys[bi, j, c] for c in range(ct)) for j in range(n)]
            top = max(logits)
            weights = [math.exp(z - top) for z in logits]
            total = sum(weights)
            for j in range(n):
                expected[bi, i] += weights[j] / total * v[bi, j]
    np.testing.assert_allclose(out.detach().double().numpy(), expected, rtol=1e-5, atol=1e-5)


def test_qsd_with_identity_attention_is_a_projection_head() -> None:
    # Rows of LN(s) are zero-mean, unit-variance and mutually orthogonal; with q = 50 * LN(s) and
    # keys T = LN(s), q @ T^T = 200 * I, so softmax(q @ T^T) is the identity to ~e^-200.
    rows = torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0], [1.0, -1.0, -1.0, 1.0]])
    s = rows.unsqueeze(0)
    head = QSDHead(4, 4)
    with torch.no_grad():
        head.q_proj.weight.copy_(50 * torch.eye(4))
        head.q_proj.bias.zero_()
    teacher = head.q_norm(s).detach()
    proj = ProjectionHead(4, 4)
    proj.norm.load_state_dict(head.v_norm.state_dict())
    proj.proj.load_state_dict(head.v_proj.state_dict())
    torch.testing.assert_close(head(s, teacher), proj(s), rtol=1e-6, atol=1e-6)


def test_qsd_values_come_from_the_student_not_the_teacher() -> None:
    torch.manual_seed(0)
    head = QSDHead(6, 4)
    s = torch.randn(1, 3, 6, requires_grad=True)
    t = torch.randn(1, 3, 4, requires_grad=True)
    head(s, t).sum().backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None  # keys are detached teacher tokens: no gradient flows into the teacher


def test_head_factory_and_token_count_check() -> None:
    assert isinstance(build_token_head("qsd", 4, 8), QSDHead)
    assert isinstance(build_token_head("linear", 4, 8), ProjectionHead)
    with pytest.raises(ValueError, match="unknown stage-1 head"):
        build_token_head("mlp", 4, 8)
    with pytest.raises(ValueError, match="align the teacher grid"):
        QSDHead(4, 8)(torch.randn(1, 3, 4), torch.randn(1, 5, 8))

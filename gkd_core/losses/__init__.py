"""Distillation losses and heads; ``qsd`` holds GKD's query-based soft distillation heads."""

from gkd_core.losses.qsd import ProjectionHead, QSDHead, build_token_head, qsd_attention

__all__ = ["ProjectionHead", "QSDHead", "build_token_head", "qsd_attention"]

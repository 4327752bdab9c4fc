"""Proteus-style two-stage distillation: GKD's pipeline with LayerNorm + Linear token heads.

The same stage 1 (proxy then source) and frozen-encoder stage 2 as :mod:`gkd_core.methods.gkd`; only
the patch-token heads differ, so the comparison isolates QSD.
"""

from __future__ import annotations

from dataclasses import replace

from gkd_core.config import Stage1Config
from gkd_core.methods._registry import register_method
from gkd_core.methods.base import STAGE1, STAGE2, MethodTraits
from gkd_core.methods.gkd import GKD


@register_method
class Proteus(GKD):
    """Stage 1 always uses projection heads, whatever the config's head says."""

    name = "proteus"
    traits = MethodTraits(stages=(STAGE1, STAGE2), teacher="tokens", stage1_head="linear", encoder="frozen")

    def stage1_config(self, cfg: Stage1Config) -> Stage1Config:
        return replace(cfg, head="linear")

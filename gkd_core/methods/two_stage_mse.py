"""GKD's decoupled pipeline with plain LayerNorm + Linear heads: the paper's ablation that isolates QSD.

Steps 1a (proxy, when given) and 1b (source) exactly as :mod:`gkd_core.methods.gkd`, the mask loss on
every position as GKD's published code, then the frozen-encoder stage 2; only the patch-token
heads differ from GKD.
"""

from __future__ import annotations

from dataclasses import replace

from gkd_core.config import Stage1Config
from gkd_core.methods._registry import register_method
from gkd_core.methods.base import STAGE1, STAGE2, MethodTraits
from gkd_core.methods.gkd import GKD


@register_method
class TwoStageMSE(GKD):
    name = "two_stage_mse"
    traits = MethodTraits(
        stages=(STAGE1, STAGE2), teacher="tokens", stage1_head="linear", encoder="frozen", proxy="optional"
    )

    def stage1_config(self, cfg: Stage1Config) -> Stage1Config:
        return replace(cfg, head="linear")

"""Proteus (Zhang et al., 2024) as METHOD.md defines the baseline: distillation on the proxy set only.

LayerNorm + Linear token heads and the patch loss on the masked positions only (Proteus' choice,
where GKD's published code regresses every position), then the same frozen-encoder stage 2 as GKD.
There is no source step: Proteus never sees the source images before stage 2.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from torch import nn

from gkd_core.config import Stage1Config
from gkd_core.errors import ConfigError
from gkd_core.methods._registry import register_method
from gkd_core.methods.base import STAGE1, STAGE2, MethodTraits
from gkd_core.methods.gkd import GKD

if TYPE_CHECKING:
    from gkd_core.experiment.run import ExperimentRun


@register_method
class Proteus(GKD):
    """Projection heads, masked-position patch loss, proxy step only."""

    name = "proteus"
    traits = MethodTraits(
        stages=(STAGE1, STAGE2), teacher="tokens", stage1_head="linear", encoder="frozen", proxy="only"
    )

    def stage1_config(self, cfg: Stage1Config) -> Stage1Config:
        return replace(cfg, head="linear", mask_loss_on="masked")

    def distil(self, run: ExperimentRun) -> nn.Module:
        cfg = run.cfg
        if cfg.proxy is None:
            raise ConfigError("proteus distils on the proxy set only: give the experiment a proxy set")
        return run.distil(source=None, proxy=self.stage1_config(cfg.proxy_stage1 or cfg.stage1))

"""Segmentation decode heads for stage 2 and every baseline (METHOD.md, stage 2).

A head takes four feature maps at strides 4, 8, 16 and 32 (finest first) and returns class logits
at the input image size. Every arm of a comparison must use the same head, so heads are picked by
name through :func:`build_head` and the name travels into checkpoints and exports.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from gkd_core.errors import ConfigError
from gkd_core.models.mask2former import Mask2FormerHead
from gkd_core.models.seg_head import SegHead, check_levels, upsample_to

_logger = logging.getLogger(__name__)

NUM_LEVELS = 4
DEFAULT_CHANNELS = 128


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class LinearHead(SegHead):
    """Linear probe on all four levels: per-level 1x1 projection, upsample to stride 4, concat, BN, 1x1 classifier.

    Everything before the classifier is linear per pixel except the BatchNorm, so the head measures
    how linearly separable the frozen features are (the DINOv2 "multi-scale linear" protocol).
    """

    def __init__(self, in_dims: Sequence[int], num_classes: int, channels: int = DEFAULT_CHANNELS) -> None:
        super().__init__()
        self.in_dims = tuple(int(d) for d in in_dims)
        self.num_classes = int(num_classes)
        self.proj = nn.ModuleList(nn.Conv2d(d, channels, 1) for d in self.in_dims)
        self.norm = nn.BatchNorm2d(channels * len(self.in_dims))
        self.classifier = nn.Conv2d(channels * len(self.in_dims), self.num_classes, 1)

    def decode(self, features: Sequence[Tensor]) -> Tensor:
        check_levels(features, len(self.in_dims))
        size = (int(features[0].shape[-2]), int(features[0].shape[-1]))
        fused = torch.cat([upsample_to(p(f), size) for p, f in zip(self.proj, features, strict=True)], dim=1)
        return self.classifier(self.norm(fused))


class FPNHead(SegHead):
    """FPN-style multi-level head: lateral 1x1, top-down sum, 3x3 smoothing, fuse at stride 4, classify.

    A light stand-in for the paper's Mask2Former head (METHOD.md allows it when every arm uses it).
    """

    in_dims_key: ClassVar[str] = "lateral.{}.weight"

    def __init__(self, in_dims: Sequence[int], num_classes: int, channels: int = DEFAULT_CHANNELS) -> None:
        super().__init__()
        self.in_dims = tuple(int(d) for d in in_dims)
        self.num_classes = int(num_classes)
        self.lateral = nn.ModuleList(nn.Conv2d(d, channels, 1) for d in self.in_dims)
        self.smooth = nn.ModuleList(_conv_bn_relu(channels, channels, 3) for _ in self.in_dims)
        self.fuse = _conv_bn_relu(channels * len(self.in_dims), channels, 3)
        self.classifier = nn.Conv2d(channels, self.num_classes, 1)

    def decode(self, features: Sequence[Tensor]) -> Tensor:
        check_levels(features, len(self.in_dims))
        laterals = [lat(f) for lat, f in zip(self.lateral, features, strict=True)]
        # Top-down: coarse semantics flow into the finer levels.
        for i in range(len(laterals) - 1, 0, -1):
            size = (int(laterals[i - 1].shape[-2]), int(laterals[i - 1].shape[-1]))
            laterals[i - 1] = laterals[i - 1] + upsample_to(laterals[i], size)
        outs = [sm(x) for sm, x in zip(self.smooth, laterals, strict=True)]
        size = (int(outs[0].shape[-2]), int(outs[0].shape[-1]))
        fused = self.fuse(torch.cat([upsample_to(o, size) for o in outs], dim=1))
        return self.classifier(fused)


HeadFactory = Callable[..., SegHead]
# The one registry of decode heads: name -> class (a ``SegHead`` subclass built as
# ``cls(in_dims, num_classes, channels=..., **options)``).
HEADS: dict[str, type[SegHead]] = {"linear": LinearHead, "fpn": FPNHead, "mask2former": Mask2FormerHead}


def _check_options(name: str, options: dict[str, Any]) -> None:
    """Refuse options a head's constructor does not name (heads taking ``**options`` check their own)."""
    params = inspect.signature(HEADS[name].__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    accepted = set(params) - {"self", "in_dims", "num_classes", "channels"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ConfigError(f"the {name} head takes no option {unknown}; it takes {sorted(accepted) or 'none'}")


def build_head(
    name: str, in_dims: Sequence[int], num_classes: int, channels: int = DEFAULT_CHANNELS, **options: Any
) -> SegHead:
    """Build a registered decode head by name (see ``HEADS``); ``options`` go to heads that take them.

    Raises:
        ConfigError: unknown name, bad widths or class count, or an option the head does not take.
    """
    if name not in HEADS:
        raise ConfigError(f"unknown head {name!r}; choose one of {sorted(HEADS)}")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
    dims = list(in_dims)
    if len(dims) != NUM_LEVELS or any(int(d) < 1 for d in dims):
        raise ConfigError(f"a head needs {NUM_LEVELS} positive input widths (strides 4-32), got {dims}")
    if channels < 1:
        raise ConfigError(f"head channels must be at least 1, got {channels}")
    _check_options(name, options)
    _logger.debug(
        "building %s head: in_dims=%s classes=%d channels=%d options=%s", name, dims, num_classes, channels, options
    )
    return HEADS[name](dims, num_classes, channels=channels, **options)

"""Make ``import torchvision`` (and so ``import timm``) work on a CPU-only torch.

The only torchvision wheel that fits torch 2.13.0 is a CUDA build. On a CPU torch, importing it
fails with "operator torchvision::nms does not exist" because its C++ extension cannot register
the op schemas its Python side expects. Declaring those schemas ourselves is enough for import:
we never call the detection ops. This module must run before anything imports torchvision, which
is why ``gkd_core/__init__.py`` imports it first. See ../shared/design/ENVIRONMENT.md (trap 2).
"""

from __future__ import annotations

from typing import Any

try:
    import torch
except ImportError:  # the API image validates datasets with numpy/PIL only and has no torch at all
    torch = None  # type: ignore[assignment]

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library: Any = None


def _nms_is_registered() -> bool:
    try:
        torch.ops.torchvision.nms  # noqa: B018 - attribute lookup raises if the op is missing
    except (AttributeError, RuntimeError):
        return False
    return True


def ensure_torchvision_ops() -> None:
    """Declare torchvision's nms/qnms op schemas when the installed build did not."""
    global _library
    if torch is None or _library is not None or _nms_is_registered():
        return
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)


ensure_torchvision_ops()

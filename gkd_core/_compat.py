"""Make ``import torchvision`` (and so ``import timm``) work on a CPU-only torch.

The only torchvision wheel that fits torch 2.13.0 is a CUDA build. On a CPU torch, importing it
fails with "operator torchvision::nms does not exist" because its C++ extension cannot register
the op schemas its Python side expects. Declaring those schemas ourselves is enough for import:
we never call the detection ops. This module must run before anything imports torchvision, which
is why ``gkd_core/__init__.py`` imports it first. See ../shared/design/ENVIRONMENT.md (trap 2).

Where torchvision's extension does fit the installed torch (a GPU machine with a matched pair) it
is loaded here instead and registers the real ops: declaring the namespace first would make its
own registration fail while the library loads, which aborts the process.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
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


def _torchvision_extension() -> str | None:
    """The file of torchvision's C++ extension (``torchvision/_C*.so``), without importing torchvision."""
    spec = importlib.util.find_spec("torchvision")
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        loaders = (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES)
        found = importlib.machinery.FileFinder(folder, loaders).find_spec("torchvision._C")
        if found is not None and found.origin:
            return found.origin
    return None


def _native_ops_load(path: str) -> bool:
    """Load the extension as torchvision itself would; False when it does not fit this torch."""
    try:
        torch.ops.load_library(path)
    except (OSError, RuntimeError):
        return False
    return True


def ensure_torchvision_ops() -> None:
    """Declare torchvision's nms/qnms op schemas when its installed extension cannot register them."""
    global _library
    if torch is None or _library is not None or _nms_is_registered():
        return
    extension = _torchvision_extension()
    if extension is None:
        return  # no torchvision to fix
    if _native_ops_load(extension) and _nms_is_registered():
        return  # its own extension registered the real ops
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        _library.define(schema)


ensure_torchvision_ops()

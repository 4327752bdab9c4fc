"""Distillation methods, one module each, found by name through a registry (timm-style).

Importing this package registers the built-in methods: ``gkd`` (the paper), ``proteus``, ``kd``,
``cwd``, ``feature_mse`` and ``none``. A new method is one module that subclasses
:class:`DistillMethod`, declares its :class:`MethodTraits` and is decorated with
:func:`register_method` (it is found and imported automatically), plus one entry in gkd_catalog
(docs/ARCHITECTURE.md, "Adding a method").
"""

from __future__ import annotations

import importlib
import pkgutil

from gkd_core.methods._registry import get_method, list_methods, register_method
from gkd_core.methods.base import STAGE1, STAGE2, DistillMethod, MethodTraits

# Every public module of this package is a method and registers itself on import: adding a method
# is adding its module, never editing a list here.
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["STAGE1", "STAGE2", "DistillMethod", "MethodTraits", "get_method", "list_methods", "register_method"]

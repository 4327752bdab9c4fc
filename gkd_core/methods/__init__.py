"""Distillation methods, one module each, found by name through a registry (timm-style).

Importing this package registers the built-in methods: ``gkd`` (the paper), ``proteus``, ``kd``,
``cwd``, ``feature_mse`` and ``none``. A new method is one module that subclasses
:class:`DistillMethod`, declares its :class:`MethodTraits` and is decorated with
:func:`register_method`, plus one entry in gkd_catalog (docs/ARCHITECTURE.md, "Adding a method").
"""

from __future__ import annotations

from gkd_core.methods import cwd, feature_mse, gkd, kd, none, proteus  # noqa: F401  (registers them)
from gkd_core.methods._registry import get_method, list_methods, register_method
from gkd_core.methods.base import STAGE1, STAGE2, DistillMethod, MethodTraits

__all__ = ["STAGE1", "STAGE2", "DistillMethod", "MethodTraits", "get_method", "list_methods", "register_method"]

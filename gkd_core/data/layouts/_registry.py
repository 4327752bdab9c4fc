"""The one registry of dataset layouts: ``register_layout`` adds one, ``get_layout`` finds it by name.

Layouts register in import order (``gkd_core/data/layouts/__init__.py`` imports the built-in modules),
and that order is the order of ``list_layouts()`` and ``LAYOUTS``. Nothing else in gkd_core picks a
layout by its name: callers get the layout object and ask it.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from gkd_core.errors import DatasetError

if TYPE_CHECKING:
    from gkd_core.data.layouts._base import Layout

_LayoutT = TypeVar("_LayoutT", bound="type[Layout]")
_REGISTRY: dict[str, Layout] = {}


def register_layout(cls: _LayoutT) -> _LayoutT:
    """Class decorator: instantiate ``cls`` and register it under ``cls.name``.

    Raises:
        ValueError: the name is empty or already registered by another class.
    """
    name = getattr(cls, "name", "")
    if not name:
        raise ValueError(f"{cls.__qualname__} has no layout name")
    existing = _REGISTRY.get(name)
    if existing is not None and type(existing) is not cls:
        raise ValueError(f"layout {name!r} is already registered by {type(existing).__qualname__}")
    _REGISTRY[name] = cls()
    return cls


def get_layout(name: str) -> Layout:
    """The registered layout called ``name``.

    Raises:
        DatasetError: unknown name; the message lists the registered layouts and close matches.
    """
    layout = _REGISTRY.get(name)
    if layout is None:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise DatasetError(f"unknown dataset layout {name!r}{hint}; choose one of {', '.join(_REGISTRY)}")
    return layout


def list_layouts(*, labels: bool | None = None) -> list[str]:
    """Registered layout names in registration order; ``labels`` keeps only labelled (True) or
    images-only (False) layouts."""
    return [name for name, layout in _REGISTRY.items() if labels is None or layout.labels == labels]


def layout_catalogue() -> list[dict[str, Any]]:
    """JSON-ready description of every layout: name, description, labels, options.

    ``options`` maps each accepted option name to ``{"description", "choices", "default"}``
    (``choices`` is None where any value of the documented type is accepted). The service's
    torch-free catalogue is checked against this by a contract test.
    """
    return [layout.describe() for layout in _REGISTRY.values()]


def detect_layout(root: Path) -> str | None:
    """Guess the layout of ``root`` from its folders (None when nothing fits).

    Every layout scores ``root`` (``Layout.detect``); the highest positive score wins and ties go to
    the layout registered first.
    """
    root = Path(root)
    best: str | None = None
    best_score = 0.0
    for name, layout in _REGISTRY.items():
        score = layout.detect(root)
        if score > best_score:
            best, best_score = name, score
    return best

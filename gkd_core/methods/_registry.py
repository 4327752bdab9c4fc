"""The method registry: one entry per distillation method, filled by the method modules themselves."""

from __future__ import annotations

import difflib
from typing import TypeVar

from gkd_core.errors import ConfigError
from gkd_core.methods.base import DistillMethod

_METHODS: dict[str, type[DistillMethod]] = {}
M = TypeVar("M", bound=type[DistillMethod])


def register_method(cls: M) -> M:
    """Class decorator: make ``cls`` available under ``cls.name``; a name is registered once."""
    name = cls.name
    if name in _METHODS and _METHODS[name] is not cls:
        raise ValueError(f"method {name!r} is already registered by {_METHODS[name].__module__}")
    _METHODS[name] = cls
    return cls


def get_method(name: str) -> DistillMethod:
    """A fresh instance of the method registered as ``name``.

    Raises:
        ConfigError: no such method; the message lists the registered ones and close matches.
    """
    try:
        return _METHODS[name]()
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_METHODS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ConfigError(f"unknown method {name!r}{hint}; registered: {', '.join(_METHODS)}") from None


def list_methods() -> list[str]:
    """Registered method names, in registration order."""
    return list(_METHODS)

"""Errors raised by gkd_core; messages name the bad value and suggest the fix."""

from __future__ import annotations


class GKDError(Exception):
    """Base class for every error gkd_core raises on purpose."""


class ConfigError(GKDError, ValueError):
    """A config value is invalid (unknown model, incompatible pair, out-of-range number)."""


class CheckpointError(GKDError):
    """A checkpoint is missing, corrupt, or does not fit the model it is loaded into."""


class DatasetError(GKDError):
    """A dataset is in the wrong layout or holds unreadable or inconsistent files."""

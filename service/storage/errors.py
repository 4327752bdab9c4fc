"""Storage errors: the one place they are defined.

Callers tell three situations apart: the object is not there (``ObjectNotFound``), the store
refused who we are (``StorageAuthError``) and the store could not be reached or failed on its side
(``StorageUnavailable``, the only transient one: the worker retries it with backoff, the API answers 503).
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every artifact storage failure."""


class InvalidKey(StorageError, ValueError):
    """A storage key that could escape its namespace (``..``, absolute, backslashes, too long)."""


class ObjectNotFound(StorageError, KeyError):
    """The key names no object."""

    def __init__(self, key: str, where: str = "") -> None:
        self.key = key
        suffix = f" in {where}" if where else ""
        super().__init__(f"no object with key {key!r}{suffix}")

    def __str__(self) -> str:
        # KeyError's __str__ would print the repr of the message; keep it readable.
        return str(self.args[0])


class StorageAuthError(StorageError):
    """The store rejected the credentials or the signature (wrong key or secret, no permission)."""


class StorageUnavailable(StorageError):
    """The store could not be reached, could not be opened, or failed on its side; worth a retry."""


class ChecksumMismatch(StorageError):
    """Downloaded bytes do not match the sha256 recorded when the object was written."""

"""Object keys: one validation rule for every store, so a key can never escape its root or bucket prefix."""

from __future__ import annotations

import re

from service.storage.errors import InvalidKey

__all__ = ["MAX_KEY_BYTES", "STAGING_FOLDER", "validate_key", "validate_prefix"]

MAX_KEY_BYTES = 1024  # S3's own limit on key length
# LocalStore's staging folder (same filesystem as the objects, so os.replace is atomic). Refused as a
# key by every store, so that keys stay portable between a local folder and a bucket.
STAGING_FOLDER = ".gkd-tmp"


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a safe relative object key, else raise InvalidKey.

    Refused: empty keys, absolute paths, backslashes, control characters, empty / ``.`` /
    ``..`` segments, keys longer than 1024 UTF-8 bytes and LocalStore's staging folder.
    """
    if not isinstance(key, str) or not key:
        raise InvalidKey("storage key must be a non-empty string")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise InvalidKey(f"storage key is longer than {MAX_KEY_BYTES} bytes: {key[:60]!r}...")
    if "\\" in key:
        raise InvalidKey(f"storage key {key!r} contains a backslash; use '/' as separator")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise InvalidKey(f"storage key {key!r} is absolute; keys are relative like 'jobs/<id>/x'")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in key):
        raise InvalidKey(f"storage key {key!r} contains control characters")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise InvalidKey(f"storage key {key!r} has an empty, '.' or '..' segment")
    if parts[0] == STAGING_FOLDER:
        raise InvalidKey(f"storage key {key!r} uses the reserved folder {STAGING_FOLDER!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """A list prefix is '' or a key, optionally ending in '/'."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix

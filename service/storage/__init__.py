"""Artifact storage behind one interface: a local folder (embedded mode) or any S3-compatible store.

Checkpoints, students, ONNX files and reports are written under keys such as
``jobs/<job id>/artifacts/student.safetensors``. Keys are validated the same way for both stores,
so a key can never escape its root or bucket prefix. Every write returns the object's size and
sha256; reads verify the sha256 recorded at write time.

Modules: ``protocol`` (ArtifactStore, ObjectVersion, StoredObject), ``errors`` (every storage error), ``keys``
(key validation), ``local`` (LocalStore), ``s3`` (S3Store). Import the public names from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from service.storage.errors import (
    ChecksumMismatch,
    InvalidKey,
    ObjectNotFound,
    StorageAuthError,
    StorageError,
    StorageUnavailable,
)
from service.storage.keys import validate_key
from service.storage.local import LocalStore
from service.storage.protocol import ArtifactStore, ObjectVersion, StoredObject
from service.storage.s3 import S3Store

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = [
    "ArtifactStore",
    "ChecksumMismatch",
    "InvalidKey",
    "LocalStore",
    "ObjectNotFound",
    "ObjectVersion",
    "S3Store",
    "StorageAuthError",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "get_store",
    "validate_key",
]


def get_store(settings: Settings, *, create_bucket: bool = False) -> ArtifactStore:
    """Build the store named by ``settings.resolved_storage_url`` (file:// or s3://bucket/prefix)."""
    url = settings.resolved_storage_url
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise StorageError(f"storage URL {url!r} names host {parts.netloc!r}; use file:///absolute/path")
        return LocalStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        store = S3Store(
            bucket=parts.netloc,
            prefix=unquote(parts.path).strip("/"),
            endpoint_url=settings.s3_endpoint_url,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            region=settings.s3_region,
            public_endpoint_url=settings.s3_public_endpoint_url,
        )
        if create_bucket:
            store.ensure_bucket()
        return store
    raise StorageError(f"unsupported storage URL {url!r}: expected file:///path or s3://bucket[/prefix]")

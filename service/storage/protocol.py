"""The one storage interface used by the API and the worker, and what a write reports back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["ArtifactStore", "StoredObject"]


@dataclass(frozen=True)
class StoredObject:
    """What a write (or a verified read) tells the caller: where, how big, which bytes."""

    key: str
    size: int
    sha256: str


@runtime_checkable
class ArtifactStore(Protocol):
    """The one storage interface used by the API and the worker."""

    def put_file(self, key: str, path: Path) -> StoredObject: ...
    def put_bytes(self, key: str, data: bytes) -> StoredObject: ...
    def get_file(self, key: str, dest: Path) -> StoredObject: ...
    def get_bytes(self, key: str) -> bytes: ...
    def exists(self, key: str) -> bool: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def delete(self, key: str) -> None: ...
    def presigned_url(self, key: str, expires_s: int) -> str | None: ...
    def local_path(self, key: str) -> Path | None: ...
    def check(self) -> None: ...

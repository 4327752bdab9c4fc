"""The one storage interface used by the API and the worker, and what a write reports back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["ArtifactStore", "ObjectVersion", "StoredObject"]


@dataclass(frozen=True)
class StoredObject:
    """What a write (or a verified read) tells the caller: where, how big, which bytes."""

    key: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ObjectVersion:
    """An object as a listing sees it: ``tag`` changes whenever its bytes do (S3's ETag; size and mtime
    for a local file), so a local copy can tell which objects it must fetch again."""

    key: str
    size: int
    tag: str


class ArtifactStore(Protocol):
    """The one storage interface used by the API and the worker.

    Every method validates its key (``InvalidKey``) and raises the ``StorageError`` kinds of
    ``service.storage.errors``; a missing object is ``ObjectNotFound``. A store hands an object to
    someone else's process in one of two ways, and the API's download route and artifact:// URIs
    ask in this order: ``presigned_url`` (a URL the client fetches itself) or ``local_path`` (a
    file on this host). Each store answers exactly one of them with a value and the other with None.
    """

    def put_file(self, key: str, path: Path) -> StoredObject:
        """Upload a local file (atomically: readers see the old object or the whole new one)."""
        ...

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        """Write ``data`` as the object ``key``."""
        ...

    def get_file(self, key: str, dest: Path) -> StoredObject:
        """Download to ``dest`` (staged, then renamed), checking the sha256 where one was recorded."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """The whole object in memory, checked like ``get_file``."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` names an object."""
        ...

    def list_versions(self, prefix: str = "") -> list[ObjectVersion]:
        """``list`` with each object's size and version tag, sorted by key."""
        ...

    def list(self, prefix: str = "") -> list[str]:
        """Sorted keys that start with ``prefix`` (a plain string prefix, not a folder)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error."""
        ...

    def presigned_url(self, key: str, expires_s: int, *, filename: str | None = None) -> str | None:
        """A URL that downloads the object for ``expires_s`` seconds, or None if the store has no URLs.

        With ``filename`` the answer carries ``Content-Disposition: attachment`` with that name, so a
        browser that simply follows the link saves the file under the artifact's name.
        """
        ...

    def local_path(self, key: str) -> Path | None:
        """The object's own file on this host, or None if the store is remote (then download it)."""
        ...

    def check(self) -> None:
        """Raise ``StorageUnavailable`` / ``StorageAuthError`` / ``StorageError`` unless the store is usable."""
        ...

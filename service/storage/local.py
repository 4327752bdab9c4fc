"""LocalStore: objects as files under one root folder (embedded mode); writes are staged, then renamed."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import IO

from service.storage._files import copy_hashing, staged
from service.storage.errors import InvalidKey, ObjectNotFound, StorageError, StorageUnavailable
from service.storage.keys import STAGING_FOLDER, validate_key, validate_prefix
from service.storage.protocol import ObjectVersion, StoredObject

__all__ = ["LocalStore"]


class LocalStore:
    """Objects as files under one root folder; writes are atomic (staged, then renamed)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).expanduser().resolve()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageUnavailable(f"cannot create the artifact folder {self.root}: {exc}") from exc

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        """Map a key to a path, resolving symlinks BEFORE checking that it stays inside root."""
        validate_key(key)
        resolved = (self.root / key).resolve()
        if not resolved.is_relative_to(self.root) or resolved == self.root:
            raise InvalidKey(f"storage key {key!r} resolves outside the store's root")
        return resolved

    def _write(self, key: str, source: IO[bytes]) -> StoredObject:
        dest = self._path(key)
        try:
            with staged(dest, self.root / STAGING_FOLDER) as tmp, tmp.open("wb") as out:
                size, sha = copy_hashing(source, out)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            raise StorageError(f"cannot write {key!r} under {self.root}: {exc}") from exc
        return StoredObject(key=key, size=size, sha256=sha)

    def put_file(self, key: str, path: Path) -> StoredObject:
        with Path(path).open("rb") as source:
            return self._write(key, source)

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        return self._write(key, io.BytesIO(data))

    def get_file(self, key: str, dest: Path) -> StoredObject:
        src = self.local_path(key)
        dest = Path(dest)
        with src.open("rb") as source, staged(dest) as tmp, tmp.open("wb") as out:
            size, sha = copy_hashing(source, out)
        return StoredObject(key=key, size=size, sha256=sha)

    def get_bytes(self, key: str) -> bytes:
        return self.local_path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_versions(self, prefix: str = "") -> list[ObjectVersion]:
        validate_prefix(prefix)
        # Walk only the deepest folder the prefix names, not the whole store.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = (self.root / folder).resolve()
        if not start.is_dir() or not start.is_relative_to(self.root):
            return []
        versions = []
        for dirpath, dirnames, filenames in os.walk(start):
            if Path(dirpath) == self.root and STAGING_FOLDER in dirnames:
                dirnames.remove(STAGING_FOLDER)
            for name in filenames:
                path = Path(dirpath) / name
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    try:
                        stat = path.stat()
                    except FileNotFoundError:  # deleted since the walk listed it
                        continue
                    versions.append(ObjectVersion(key, stat.st_size, f"{stat.st_size}:{stat.st_mtime_ns}"))
        return sorted(versions, key=lambda version: version.key)

    def list(self, prefix: str = "") -> list[str]:
        return [version.key for version in self.list_versions(prefix)]

    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        # Prune folders left empty, so listing and disk usage stay clean.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def presigned_url(self, key: str, expires_s: int, *, filename: str | None = None) -> str | None:
        """Local files have no URL: the API streams ``local_path(key)`` instead."""
        validate_key(key)
        return None

    def local_path(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFound(key, str(self.root))
        return path

    def check(self) -> None:
        try:
            staging = self.root / STAGING_FOLDER
            staging.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=staging, prefix=".probe-"):
                pass
        except OSError as exc:
            raise StorageUnavailable(f"artifact folder {self.root} is not writable: {exc}") from exc

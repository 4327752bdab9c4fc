"""Turn the dataset and weights URIs of a job spec into local paths the worker can open.

- ``file:///abs/path``: only under the allowed roots (``settings.allowed_roots``, plus the data
  directory in embedded mode). Percent-encoding, ``..`` and symlinks are resolved BEFORE the check,
  so no spelling of a path can step outside a root.
- ``s3://bucket/key`` or ``s3://bucket/prefix/``: copied into ``data_dir/cache/s3/<hash>`` and kept
  in step with the bucket on every resolve (only new or changed objects are fetched again; see
  ``service.remote_mirror``).
- ``artifact://<job id>/<name>``: the output of an earlier job, at storage key
  ``jobs/<job id>/artifacts/<name>``. The caller supplies the ownership check.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from service.remote_mirror import list_remote, mirror
from service.storage import ArtifactStore, InvalidKey, S3Store, validate_key

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = [
    "PathNotAllowed",
    "UnsupportedUri",
    "UriError",
    "UriNotFound",
    "UriResolver",
    "allowed_roots",
    "artifact_key",
]

_logger = logging.getLogger(__name__)

_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class UriError(ValueError):
    """A dataset or weights URI that cannot be used; the message says why and how to fix it."""


class UnsupportedUri(UriError):
    """Not a file://, s3:// or artifact:// URI, or malformed."""


class PathNotAllowed(UriError):
    """A file:// path that resolves outside every allowed root."""


class UriNotFound(UriError):
    """The URI is well-formed and allowed, but names nothing."""


def artifact_key(job_id: str, name: str) -> str:
    """The storage key of a job's artifact (the one place this layout is spelled out)."""
    if not _JOB_ID.match(job_id):
        raise UnsupportedUri(f"invalid job id {job_id!r} in artifact URI")
    if not _ARTIFACT_NAME.match(name) or ".." in name:
        raise UnsupportedUri(f"invalid artifact name {name!r}: use letters, digits, '.', '_' and '-'")
    return f"jobs/{job_id}/artifacts/{name}"


TEAM_PLACEHOLDER = "{team}"


def for_team(entries: Sequence[str], team: str | None) -> list[str]:
    """Configured roots or buckets with ``{team}`` replaced by the team's name; an entry naming ``{team}`` is
    left out where no team is known. Team names are one safe path component (service/auth.py's _TEAM)."""
    found = []
    for entry in entries:
        if TEAM_PLACEHOLDER in entry:
            if team is None:
                continue
            entry = entry.replace(TEAM_PLACEHOLDER, team)
        found.append(entry)
    return found


def allowed_roots(settings: Settings, team: str | None = None) -> list[Path]:
    """Roots under which file:// URIs are accepted: configured roots (``{team}`` in one stands for the team
    whose data it is), plus data_dir when embedded."""
    roots = [Path(root) for root in for_team([str(root) for root in settings.allowed_roots], team)]
    if settings.mode == "embedded":
        roots.append(Path(settings.data_dir))
    return [root.expanduser().resolve() for root in roots]


def owned_paths(settings: Settings) -> list[Path]:
    """Folders and files the service keeps under its data folder, and its local artifact store wherever it is."""
    data = Path(settings.data_dir)
    paths = [data / name for name in ("artifacts", "cache", "work", "prepared", "logs", "api-key")]
    for url in (settings.resolved_storage_url, settings.resolved_database_url, settings.resolved_broker_url):
        parts = urlsplit(url)
        if parts.scheme == "file":
            paths.append(Path(unquote(parts.path)))
        elif parts.scheme.startswith(("sqlite", "sqla+sqlite")) and parts.path not in ("", "/", "/:memory:"):
            database = Path(unquote(parts.path[1:]))  # sqlite:///rel.db is relative, sqlite:////abs.db absolute
            paths += [database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")]
    return paths


def owned_s3(settings: Settings) -> tuple[str, str] | None:
    """The service's own ``(bucket, prefix)`` when its artifacts live in S3."""
    parts = urlsplit(settings.resolved_storage_url)
    return (parts.netloc, unquote(parts.path).strip("/")) if parts.scheme == "s3" else None


def _digest(identity: str) -> str:
    """A URI's folder name in the cache."""
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so two workers on one host never fill one cache entry at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class UriResolver:
    """Resolves URIs for one worker process. Build it with ``from_settings`` in service code."""

    roots: Sequence[Path]
    cache_dir: Path
    s3_store_for_bucket: Callable[[str], ArtifactStore] | None = None
    artifact_store: ArtifactStore | None = None
    can_access_job: Callable[[str], bool] | None = None
    # The service's own files (every team's artifacts, the download cache, scratch, the database) and its own
    # s3://bucket/prefix: never read as a user's data, even where an allowed root or the credentials reach them.
    owned_paths: Sequence[Path] = ()
    owned_s3: tuple[str, str] | None = None
    allowed_buckets: Sequence[str] | None = None  # None: any bucket but the service's own area
    download_concurrency: int = 16  # objects of an s3:// prefix fetched at once
    _resolved_roots: list[Path] = field(init=False, repr=False)
    _owned: list[Path] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._resolved_roots = [Path(root).expanduser().resolve() for root in self.roots]
        self.cache_dir = Path(self.cache_dir)
        self._owned = [Path(p).expanduser().resolve() for p in (*self.owned_paths, self.cache_dir)]

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        team: str | None = None,
        artifact_store: ArtifactStore | None = None,
        can_access_job: Callable[[str], bool] | None = None,
    ) -> UriResolver:
        """Roots, cache folder and S3 credentials from Settings, for ``team``'s data (its name fills the
        ``{team}`` of a configured root or bucket); the job ownership check from the caller."""

        def s3_store(bucket: str) -> ArtifactStore:
            return S3Store(
                bucket=bucket,
                endpoint_url=settings.s3_endpoint_url,
                access_key=settings.s3_access_key,
                secret_key=settings.s3_secret_key,
                region=settings.s3_region,
            )

        return cls(
            roots=allowed_roots(settings, team),
            cache_dir=Path(settings.data_dir) / "cache",
            s3_store_for_bucket=s3_store,
            artifact_store=artifact_store,
            can_access_job=can_access_job,
            owned_paths=owned_paths(settings),
            owned_s3=owned_s3(settings),
            # A configured list stays a list (maybe empty: no bucket) even when none of it applies to this team.
            allowed_buckets=tuple(for_team(settings.s3_allowed_buckets, team)) if settings.s3_allowed_buckets else None,
            download_concurrency=settings.s3_download_concurrency,
        )

    def resolve(self, uri: str, *, on_file: Callable[[], None] | None = None) -> Path:
        """Return a local file or folder for ``uri``, downloading it first if it is remote.

        ``on_file`` is called before each object of an s3:// URI is downloaded; what it raises stops the
        download and is raised from here.

        Raises:
            UriError: unsupported or malformed URI, path outside the allowed roots, nothing there.
            StorageError: the remote store failed (StorageUnavailable is transient).
        """
        if not isinstance(uri, str) or "\x00" in uri:
            raise UnsupportedUri("a URI must be a string without NUL characters")
        scheme = urlsplit(uri).scheme
        if scheme == "file":
            return self._resolve_file(uri)
        if scheme == "s3":
            return self._resolve_s3(uri, on_file)
        if scheme == "artifact":
            return self._resolve_artifact(uri)
        raise UnsupportedUri(
            f"unsupported URI {uri!r}: use file:///absolute/path, s3://bucket/key or artifact://<job id>/<name>"
        )

    # ----------------------------------------------------------------------- file://

    def _resolve_file(self, uri: str) -> Path:
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise UnsupportedUri(f"{uri!r} names host {parts.netloc!r}; file URIs look like file:///absolute/path")
        if parts.query or parts.fragment:
            raise UnsupportedUri(f"{uri!r} has a '?' or '#' part; percent-encode them in file names (%3F, %23)")
        raw = unquote(parts.path)
        if "\x00" in raw or not raw.startswith("/"):
            raise UnsupportedUri(f"{uri!r} is not an absolute path; use file:///absolute/path")
        # realpath resolves symlinks and '..' together, the way the kernel will when we open it.
        resolved = Path(os.path.realpath(raw))
        for owned in self._owned:  # inside the service's files, or a folder that holds them
            if resolved == owned or resolved.is_relative_to(owned) or owned.is_relative_to(resolved):
                raise PathNotAllowed(f"{uri!r} is or holds the service's own files; point at the data itself")
        if not any(resolved == root or resolved.is_relative_to(root) for root in self._resolved_roots):
            roots = ", ".join(str(root) for root in self._resolved_roots) or "(none configured)"
            raise PathNotAllowed(
                f"{uri!r} resolves to {resolved}, which is outside the allowed roots: {roots}. "
                "Add its folder to GKD_ALLOWED_ROOTS or copy the data under one of them."
            )
        if not resolved.exists():
            raise UriNotFound(f"{uri!r}: {resolved} does not exist")
        return resolved

    # ----------------------------------------------------------------------- s3://

    def _resolve_s3(self, uri: str, on_file: Callable[[], None] | None) -> Path:
        parts = urlsplit(uri)
        bucket, key = parts.netloc, unquote(parts.path).lstrip("/")
        if not bucket:
            raise UnsupportedUri(f"{uri!r} has no bucket; use s3://bucket/key")
        if parts.query or parts.fragment:
            raise UnsupportedUri(f"{uri!r} has a '?' or '#' part; percent-encode them in keys (%3F, %23)")
        if key:
            try:
                validate_key(key[:-1] if key.endswith("/") else key)
            except InvalidKey as exc:
                raise UnsupportedUri(f"{uri!r}: {exc}") from exc
        if self.allowed_buckets is not None and bucket not in self.allowed_buckets:
            raise PathNotAllowed(
                f"{uri!r}: bucket {bucket!r} is not one this service reads data from "
                f"({', '.join(self.allowed_buckets) or 'none for you'}); the operator sets GKD_S3_ALLOWED_BUCKETS"
            )
        if self.owned_s3 is not None and bucket == self.owned_s3[0]:
            area = self.owned_s3[1]
            if not area or key == area or key.startswith(area + "/") or area.startswith(key):
                raise PathNotAllowed(f"{uri!r} is or holds the service's own artifact store; point at the data itself")
        if self.s3_store_for_bucket is None:
            raise UnsupportedUri(f"{uri!r}: this resolver has no S3 access configured")
        store = self.s3_store_for_bucket(bucket)
        identity = f"s3://{bucket}/{key}"
        digest = _digest(identity)
        root = self.cache_dir / "s3" / digest
        self._drop_unversioned(digest)
        with _locked(root.with_name(f"{digest}.lock")):
            tree = list_remote(store, key)
            if tree is None:
                raise UriNotFound(f"{uri!r}: no object and no objects under that prefix")
            return mirror(store, tree, root, self.download_concurrency, on_file)

    def _drop_unversioned(self, digest: str) -> None:
        """Remove a copy of this URI in the cache's first layout (one folder, never refreshed)."""
        marker = self.cache_dir / f"{digest}.complete"
        if not marker.is_file():
            return
        with _locked(self.cache_dir / f"{digest}.lock"):
            shutil.rmtree(self.cache_dir / digest, ignore_errors=True)
            marker.unlink(missing_ok=True)
        _logger.info("removed an unversioned cached copy %s", self.cache_dir / digest)

    # ----------------------------------------------------------------------- artifact://

    def _resolve_artifact(self, uri: str) -> Path:
        parts = urlsplit(uri)
        job_id, name = parts.netloc, unquote(parts.path).lstrip("/")
        key = artifact_key(job_id, name)  # validates both parts
        if self.artifact_store is None or self.can_access_job is None:
            raise UnsupportedUri(f"{uri!r}: artifact URIs need the artifact store and a job ownership check")
        missing = UriNotFound(f"{uri!r}: job {job_id} has no artifact {name!r}")
        # Another team's job answers exactly like a missing one: no hint that it exists.
        if not self.can_access_job(job_id) or not self.artifact_store.exists(key):
            raise missing
        local = self.artifact_store.local_path(key)
        if local is not None:
            return local
        store = self.artifact_store

        def fill(entry: Path) -> str:
            store.get_file(key, entry / name)
            return name

        return self._cached(uri, fill)

    # ----------------------------------------------------------------------- cache

    def _cached(self, identity: str, fill: Callable[[Path], str]) -> Path:
        """Fill ``cache/<hash>`` once; the ``<hash>.complete`` marker is written only after ``fill``.

        ``fill(entry)`` downloads into ``entry`` and returns the result's path relative to it.
        """
        digest = _digest(identity)
        entry = self.cache_dir / digest
        marker = self.cache_dir / f"{digest}.complete"
        with _locked(self.cache_dir / f"{digest}.lock"):
            if marker.is_file():
                return entry / marker.read_text()
            if entry.exists():
                _logger.warning("discarding an incomplete download of %s in %s", identity, entry)
                shutil.rmtree(entry)
            entry.mkdir(parents=True)
            try:
                relative = fill(entry)
            except BaseException:
                shutil.rmtree(entry, ignore_errors=True)
                raise
            tmp = marker.with_suffix(".tmp")
            tmp.write_text(relative)
            os.replace(tmp, marker)
            return entry / relative

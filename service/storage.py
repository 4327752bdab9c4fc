"""Artifact storage behind one interface: a local folder (embedded mode) or any S3-compatible store.

Checkpoints, students, ONNX files and reports are written under keys such as
``jobs/<job id>/artifacts/student.safetensors``. Keys are validated the same way for both stores,
so a key can never escape its root or bucket prefix. Every write returns the object's size and
sha256; reads verify the sha256 recorded at write time.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable
from urllib.parse import unquote, urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from service.errors_storage import (
    IntegrityError,
    InvalidKey,
    ObjectNotFound,
    StorageAuthError,
    StorageError,
    StorageUnavailable,
)

if TYPE_CHECKING:
    from service.settings import Settings

__all__ = [
    "ArtifactStore",
    "IntegrityError",
    "InvalidKey",
    "LocalStore",
    "ObjectNotFound",
    "S3Store",
    "StorageAuthError",
    "StorageError",
    "StorageUnavailable",
    "StoredObject",
    "get_store",
    "validate_key",
]

_logger = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024  # S3's own limit on key length
MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4 presigned URLs cannot live longer than a week
_MIB = 1024 * 1024
_CHUNK = 1 * _MIB
_LOCAL_TMP = ".gkd-tmp"  # LocalStore's staging folder: same filesystem, so os.replace is atomic
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


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


# --------------------------------------------------------------------------- keys


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
    if parts[0] == _LOCAL_TMP:
        raise InvalidKey(f"storage key {key!r} uses the reserved folder {_LOCAL_TMP!r}")
    return key


def _validate_prefix(prefix: str) -> str:
    """A list prefix is '' or a key, optionally ending in '/'."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def _sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _copy_hashing(src: IO[bytes], dst: IO[bytes]) -> tuple[int, str]:
    """Copy a stream while hashing it, so a local write costs a single pass."""
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


@contextlib.contextmanager
def _staged(dest: Path, staging_dir: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path; on success move it onto ``dest`` atomically, else remove it."""
    staging_dir = staging_dir or dest.parent
    staging_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name[:40]}.", suffix=".partial", dir=staging_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


# --------------------------------------------------------------------------- local folder


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
            with _staged(dest, self.root / _LOCAL_TMP) as tmp, tmp.open("wb") as out:
                size, sha = _copy_hashing(source, out)
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
        with src.open("rb") as source, _staged(dest) as tmp, tmp.open("wb") as out:
            size, sha = _copy_hashing(source, out)
        return StoredObject(key=key, size=size, sha256=sha)

    def get_bytes(self, key: str) -> bytes:
        return self.local_path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        _validate_prefix(prefix)
        # Walk only the deepest folder the prefix names, not the whole store.
        folder = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = (self.root / folder).resolve()
        if not start.is_dir() or not start.is_relative_to(self.root):
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(start):
            if Path(dirpath) == self.root and _LOCAL_TMP in dirnames:
                dirnames.remove(_LOCAL_TMP)
            for name in filenames:
                key = (Path(dirpath) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)

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

    def presigned_url(self, key: str, expires_s: int) -> str | None:
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
            staging = self.root / _LOCAL_TMP
            staging.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=staging, prefix=".probe-"):
                pass
        except OSError as exc:
            raise StorageUnavailable(f"artifact folder {self.root} is not writable: {exc}") from exc


# --------------------------------------------------------------------------- S3

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_AUTH = {
    "403",
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidToken",
    "ExpiredToken",
    "AuthorizationHeaderMalformed",
}
_TRANSIENT = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling", "503", "500"}
_NO_CHECKSUM = {"NotImplemented", "InvalidArgument", "InvalidRequest", "XAmzContentChecksumMismatch"}
_T = TypeVar("_T")
_SESSION_LOCK = threading.Lock()


@functools.cache
def _boto_session() -> boto3.session.Session:
    """One boto3 session per process: loading botocore's service data costs ~0.3 s per session."""
    return boto3.session.Session()


def _client_error_code(exc: ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(error.get("Code", "")), int(status or 0)


@dataclass
class S3Store:
    """Objects in an S3-compatible bucket under an optional key prefix.

    Big files go up in parts (``multipart_threshold``/``multipart_chunksize``); the sha256 of
    each object is stored as ``x-amz-meta-sha256`` (computed in one streaming pass before the upload,
    because metadata must travel with the first request) and checked on every read. Where the server
    supports it, S3's own SHA256 checksums are sent too; a server that rejects them makes the store
    fall back to plain uploads. Transient failures are retried by botocore (``retry_mode``,
    ``max_attempts``); what remains is raised as a StorageError subclass.
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    region: str = "us-east-1"
    public_endpoint_url: str | None = None  # host clients see in presigned URLs (compose: localhost)
    multipart_threshold: int = 64 * _MIB
    multipart_chunksize: int = 16 * _MIB
    max_concurrency: int = 4
    retry_mode: str = "standard"
    max_attempts: int = 5
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    check_timeout_s: float = 2.0
    checksum_algorithm: str | None = "SHA256"
    addressing_style: str = "path"
    _client: Any = field(init=False, repr=False)
    _presign_client: Any = field(init=False, repr=False)
    _probe_client: Any = field(init=False, repr=False)
    _transfer: TransferConfig = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not _BUCKET_RE.match(self.bucket):
            raise StorageError(f"invalid bucket name {self.bucket!r}: 3-63 of a-z, 0-9, '.', '-'")
        if self.retry_mode not in ("standard", "adaptive", "legacy"):
            raise StorageError(f"retry_mode {self.retry_mode!r} must be standard, adaptive or legacy")
        if self.multipart_chunksize < 5 * _MIB:
            raise StorageError("multipart_chunksize must be at least 5 MiB (S3's minimum part size)")
        self.prefix = _validate_prefix(self.prefix.strip("/") + "/" if self.prefix.strip("/") else "")
        self._client = self._make_client(
            self.endpoint_url, self.max_attempts, self.connect_timeout_s, self.read_timeout_s
        )
        self._presign_client = None
        self._probe_client = None
        self._transfer = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_chunksize,
            max_concurrency=self.max_concurrency,
        )

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint_url={self.endpoint_url!r})"

    def _make_client(self, endpoint: str | None, attempts: int, connect_s: float, read_s: float) -> Any:
        # total_max_attempts counts the first try too; botocore retries throttling, 5xx and
        # connection errors with backoff (standard/adaptive mode).
        retries: Any = {"mode": self.retry_mode, "total_max_attempts": attempts}
        s3_options: Any = {"addressing_style": self.addressing_style}
        config = Config(
            signature_version="s3v4",
            region_name=self.region,
            retries=retries,
            connect_timeout=connect_s,
            read_timeout=read_s,
            s3=s3_options,
            # Only send checksums we ask for: botocore's default CRC32 trailers break some servers.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        with _SESSION_LOCK:  # creating clients from one session is not thread-safe
            return _boto_session().client(
                "s3",
                endpoint_url=endpoint,
                aws_access_key_id=self.access_key,
                aws_secret_access_key=self.secret_key,
                region_name=self.region,
                config=config,
            )

    def _presigner(self) -> Any:
        """Presigned URLs must name the host clients can reach, which may differ from ours."""
        if self._presign_client is None:
            endpoint = self.public_endpoint_url
            self._presign_client = (
                self._make_client(endpoint, 1, self.check_timeout_s, self.check_timeout_s) if endpoint else self._client
            )
        return self._presign_client

    def _prober(self) -> Any:
        """/readyz must answer fast: one attempt, short timeouts."""
        if self._probe_client is None:
            self._probe_client = self._make_client(self.endpoint_url, 1, self.check_timeout_s, self.check_timeout_s)
        return self._probe_client

    def _full(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _error(self, exc: BaseException, action: str, key: str = "") -> StorageError:
        """Translate boto errors into the three kinds callers act on."""
        target = f"{self._where()}{key}" if key else self._where()
        if isinstance(exc, S3UploadFailedError) and isinstance(exc.__cause__ or exc.__context__, ClientError):
            exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
        if isinstance(exc, ClientError):
            code, status = _client_error_code(exc)
            if code in _NOT_FOUND or status == 404:
                if code == "NoSuchBucket":
                    return StorageError(f"bucket {self.bucket!r} does not exist at {self.endpoint_url or 'AWS'}")
                return ObjectNotFound(key, self._where())
            if code in _AUTH or status in (401, 403):
                return StorageAuthError(
                    f"{action} {target} refused ({code or status}): check GKD_S3_ACCESS_KEY / GKD_S3_SECRET_KEY"
                )
            if code in _TRANSIENT or status >= 500:
                return StorageUnavailable(f"{action} {target} failed on the server ({code or status})")
            return StorageError(f"{action} {target} failed: {code or status}: {exc}")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return StorageAuthError(f"{action} {target}: no S3 credentials; set GKD_S3_ACCESS_KEY / GKD_S3_SECRET_KEY")
        if isinstance(exc, BotoConnectionError | ConnectionError | TimeoutError):
            return StorageUnavailable(f"{action} {target}: cannot reach {self.endpoint_url or 'S3'}: {exc}")
        if isinstance(exc, BotoCoreError | S3UploadFailedError):
            return StorageError(f"{action} {target} failed: {exc}")
        return StorageError(f"{action} {target} failed: {exc!r}")

    def _call(self, action: str, key: str, fn: Callable[[], _T]) -> _T:
        try:
            return fn()
        except (ClientError, BotoCoreError, S3UploadFailedError, ConnectionError, TimeoutError) as exc:
            raise self._error(exc, action, key) from exc

    def _upload(self, action: str, key: str, fn: Callable[[dict[str, str]], _T]) -> _T:
        """Run an upload with S3 checksums; if the server refuses them, drop them once and retry."""
        checksum = {"ChecksumAlgorithm": self.checksum_algorithm} if self.checksum_algorithm else {}
        try:
            return fn(checksum)
        except (ClientError, S3UploadFailedError) as exc:
            inner = exc if isinstance(exc, ClientError) else (exc.__cause__ or exc.__context__)
            code = _client_error_code(inner)[0] if isinstance(inner, ClientError) else ""
            if not checksum or code not in _NO_CHECKSUM:
                raise self._error(exc, action, key) from exc
            _logger.warning("%s rejects %s checksums (%s); uploading without them", self._where(), checksum, code)
            self.checksum_algorithm = None
        except (BotoCoreError, ConnectionError, TimeoutError) as exc:
            raise self._error(exc, action, key) from exc
        return self._call(action, key, lambda: fn({}))

    def put_file(self, key: str, path: Path) -> StoredObject:
        full = self._full(key)
        size, sha = _sha256_file(Path(path))

        def upload(checksum: dict[str, str]) -> None:
            extra: dict[str, Any] = {"Metadata": {"sha256": sha}, **checksum}
            self._client.upload_file(str(path), self.bucket, full, ExtraArgs=extra, Config=self._transfer)

        self._upload("upload to", key, upload)
        return StoredObject(key=key, size=size, sha256=sha)

    def put_bytes(self, key: str, data: bytes) -> StoredObject:
        full = self._full(key)
        sha = hashlib.sha256(data).hexdigest()

        def upload(checksum: dict[str, str]) -> None:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data, Metadata={"sha256": sha}, **checksum)

        self._upload("upload to", key, upload)
        return StoredObject(key=key, size=len(data), sha256=sha)

    def _expected_sha(self, key: str) -> str | None:
        head = self._call("read", key, lambda: self._client.head_object(Bucket=self.bucket, Key=self._full(key)))
        value = head.get("Metadata", {}).get("sha256")
        return str(value) if value else None

    def _verify(self, key: str, expected: str | None, actual: str) -> None:
        if expected and expected != actual:
            raise IntegrityError(f"{self._where()}{key}: sha256 {actual} does not match the recorded {expected}")

    def get_file(self, key: str, dest: Path) -> StoredObject:
        full = self._full(key)
        expected = self._expected_sha(key)  # also turns a missing key into ObjectNotFound early
        dest = Path(dest)
        with _staged(dest) as tmp:
            self._call(
                "download",
                key,
                lambda: self._client.download_file(self.bucket, full, str(tmp), Config=self._transfer),
            )
            size, sha = _sha256_file(tmp)
            self._verify(key, expected, sha)
        return StoredObject(key=key, size=size, sha256=sha)

    def get_bytes(self, key: str) -> bytes:
        full = self._full(key)

        def read() -> tuple[bytes, str | None]:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            return response["Body"].read(), response.get("Metadata", {}).get("sha256")

        data, expected = self._call("download", key, read)
        self._verify(key, expected, hashlib.sha256(data).hexdigest())
        return data

    def exists(self, key: str) -> bool:
        try:
            self._expected_sha(key)
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str = "") -> list[str]:
        full = self.prefix + _validate_prefix(prefix)

        def collect() -> list[str]:
            keys: list[str] = []
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
            return sorted(keys)

        return self._call("list", prefix, collect)

    def delete(self, key: str) -> None:
        full = self._full(key)
        self._call("delete", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=full))

    def presigned_url(self, key: str, expires_s: int) -> str:
        if not 1 <= expires_s <= MAX_PRESIGN_S:
            raise StorageError(f"expires_s={expires_s} must be between 1 and {MAX_PRESIGN_S} seconds")
        full = self._full(key)
        url = self._call(
            "presign",
            key,
            lambda: self._presigner().generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": full}, ExpiresIn=expires_s
            ),
        )
        return str(url)

    def local_path(self, key: str) -> Path | None:
        validate_key(key)
        return None

    def check(self) -> None:
        try:
            self._prober().head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _client_error_code(exc) in (("404", 404), ("NoSuchBucket", 404)):
                # HEAD answers carry no body, so a missing bucket shows up as a bare 404.
                raise StorageError(f"bucket {self.bucket!r} does not exist at {self.endpoint_url or 'AWS'}") from exc
            raise self._error(exc, "check") from exc
        except (BotoCoreError, ConnectionError, TimeoutError) as exc:
            raise self._error(exc, "check") from exc

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (compose, tests, first start)."""
        try:
            self.check()
            return
        except StorageAuthError:
            raise
        except StorageError as exc:
            if "does not exist" not in str(exc):
                raise
        options: dict[str, Any] = {}
        if self.region != "us-east-1":
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(Bucket=self.bucket, **options)
        except ClientError as exc:
            if _client_error_code(exc)[0] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._error(exc, "create bucket") from exc
        except BotoCoreError as exc:
            raise self._error(exc, "create bucket") from exc
        _logger.info("created bucket %s", self.bucket)


# --------------------------------------------------------------------------- factory


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
            public_endpoint_url=getattr(settings, "s3_public_endpoint_url", None),
        )
        if create_bucket:
            store.ensure_bucket()
        return store
    raise StorageError(f"unsupported storage URL {url!r}: expected file:///path or s3://bucket[/prefix]")

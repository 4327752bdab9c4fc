"""S3Store: objects in any S3-compatible bucket (AWS, MinIO, SeaweedFS) under an optional key prefix.

Every boto failure is translated into one of the StorageError kinds of service.storage.errors.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

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

from service.storage._files import MIB, sha256_file, staged
from service.storage.errors import (
    ChecksumMismatch,
    ObjectNotFound,
    StorageAuthError,
    StorageError,
    StorageUnavailable,
)
from service.storage.keys import validate_key, validate_prefix
from service.storage.protocol import ObjectVersion, StoredObject

__all__ = ["MAX_PRESIGN_S", "S3Store"]

_logger = logging.getLogger(__name__)

MAX_PRESIGN_S = 7 * 24 * 3600  # SigV4 presigned URLs cannot live longer than a week
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
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
    multipart_threshold: int = 64 * MIB
    multipart_chunksize: int = 16 * MIB
    max_concurrency: int = 4
    pool_connections: int = 64
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
        if self.multipart_chunksize < 5 * MIB:
            raise StorageError("multipart_chunksize must be at least 5 MiB (S3's minimum part size)")
        self.prefix = validate_prefix(self.prefix.strip("/") + "/" if self.prefix.strip("/") else "")
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
            max_pool_connections=self.pool_connections,  # a dataset prefix is fetched by many threads at once
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
        size, sha = sha256_file(Path(path))

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
            raise ChecksumMismatch(f"{self._where()}{key}: sha256 {actual} does not match the recorded {expected}")

    def get_file(self, key: str, dest: Path) -> StoredObject:
        full = self._full(key)
        expected = self._expected_sha(key)  # also turns a missing key into ObjectNotFound early
        dest = Path(dest)
        with staged(dest) as tmp:
            self._call(
                "download",
                key,
                lambda: self._client.download_file(self.bucket, full, str(tmp), Config=self._transfer),
            )
            size, sha = sha256_file(tmp)
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

    def list_versions(self, prefix: str = "") -> list[ObjectVersion]:
        full = self.prefix + validate_prefix(prefix)

        def collect() -> list[ObjectVersion]:
            versions: list[ObjectVersion] = []
            for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full):
                versions.extend(
                    ObjectVersion(item["Key"][len(self.prefix) :], int(item["Size"]), str(item["ETag"]).strip('"'))
                    for item in page.get("Contents", [])
                )
            return sorted(versions, key=lambda version: version.key)

        return self._call("list", prefix, collect)

    def list(self, prefix: str = "") -> list[str]:
        return [version.key for version in self.list_versions(prefix)]

    def delete(self, key: str) -> None:
        full = self._full(key)
        self._call("delete", key, lambda: self._client.delete_object(Bucket=self.bucket, Key=full))

    def presigned_url(self, key: str, expires_s: int, *, filename: str | None = None) -> str:
        if not 1 <= expires_s <= MAX_PRESIGN_S:
            raise StorageError(f"expires_s={expires_s} must be between 1 and {MAX_PRESIGN_S} seconds")
        params = {"Bucket": self.bucket, "Key": self._full(key)}
        if filename is not None:  # S3 sends back the response header the signed URL asks for
            params["ResponseContentDisposition"] = attachment_disposition(filename)
        url = self._call(
            "presign",
            key,
            lambda: self._presigner().generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s),
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


def attachment_disposition(filename: str) -> str:
    """``Content-Disposition: attachment`` for the name's last segment (RFC 6266; RFC 5987 outside plain ASCII)."""
    name = filename.rsplit("/", 1)[-1]
    if name.isascii() and name.isprintable() and not any(c in name for c in '"\\;'):
        return f'attachment; filename="{name}"'
    return f"attachment; filename*=UTF-8''{quote(name, safe='')}"

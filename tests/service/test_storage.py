"""ArtifactStore contract, run against a local folder and a real SeaweedFS S3 server alike."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import Settings
from service.storage import (
    ArtifactStore,
    ChecksumMismatch,
    InvalidKey,
    LocalStore,
    ObjectNotFound,
    S3Store,
    StorageAuthError,
    StorageError,
    StorageUnavailable,
    get_store,
    validate_key,
)
from service.storage.s3 import attachment_disposition
from tests.support.ports import free_ports
from tests.support.seaweed import SeaweedS3

BUCKET = "gkd-storage-tests"
MIB = 1024 * 1024


def make_s3_store(server: SeaweedS3, **options: object) -> S3Store:
    """A store in a shared bucket under a fresh prefix, so tests never see each other's keys."""
    server.ensure_bucket(BUCKET)
    return S3Store(
        bucket=BUCKET,
        prefix=f"t-{uuid.uuid4().hex[:12]}",
        endpoint_url=server.endpoint_url,
        access_key=server.access_key,
        secret_key=server.secret_key,
        region=server.region,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield LocalStore(tmp_path / "artifacts")
    else:
        yield make_s3_store(request.getfixturevalue("seaweed_s3"))


def test_bytes_round_trip_reports_size_and_sha256(store: ArtifactStore) -> None:
    data = b"checkpoint bytes \x00\xff" * 100
    stored = store.put_bytes("jobs/j1/artifacts/a.bin", data)
    assert stored.key == "jobs/j1/artifacts/a.bin"
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert store.get_bytes("jobs/j1/artifacts/a.bin") == data


def test_file_round_trip_writes_destination_atomically(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(300_000))
    stored = store.put_file("jobs/j1/student.safetensors", src)
    dest = tmp_path / "out" / "deep" / "student.safetensors"
    got = store.get_file("jobs/j1/student.safetensors", dest)
    assert dest.read_bytes() == src.read_bytes()
    assert got.sha256 == stored.sha256 == hashlib.sha256(src.read_bytes()).hexdigest()
    assert got.size == stored.size == 300_000
    assert [p.name for p in dest.parent.iterdir()] == ["student.safetensors"], "no partial files left behind"


def test_overwrite_replaces_content(store: ArtifactStore) -> None:
    store.put_bytes("a/b", b"one")
    store.put_bytes("a/b", b"two")
    assert store.get_bytes("a/b") == b"two"


def test_exists_list_delete(store: ArtifactStore) -> None:
    for key in ["jobs/1/a", "jobs/1/sub/b", "jobs/10/c", "other/d"]:
        store.put_bytes(key, key.encode())
    assert store.exists("jobs/1/a")
    assert not store.exists("jobs/1/zzz")
    assert store.list("jobs/1/") == ["jobs/1/a", "jobs/1/sub/b"]
    assert store.list("jobs/1") == ["jobs/1/a", "jobs/1/sub/b", "jobs/10/c"]
    assert store.list() == ["jobs/1/a", "jobs/1/sub/b", "jobs/10/c", "other/d"]
    assert store.list("nothing/") == []
    store.delete("jobs/1/sub/b")
    store.delete("jobs/1/sub/b")  # deleting twice is not an error
    assert not store.exists("jobs/1/sub/b")
    assert store.list("jobs/") == ["jobs/1/a", "jobs/10/c"]


def test_missing_key_raises_object_not_found(store: ArtifactStore, tmp_path: Path) -> None:
    with pytest.raises(ObjectNotFound, match="missing/key"):
        store.get_bytes("missing/key")
    with pytest.raises(ObjectNotFound):
        store.get_file("missing/key", tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../escape",
        "a/../../escape",
        "/etc/passwd",
        "a\\b",
        "a//b",
        "./a",
        "a/.",
        "C:/windows",
        "a\x00b",
        "x" * 1025,
        ".gkd-tmp/x",
    ],
)
def test_unsafe_keys_are_refused(store: ArtifactStore, key: str) -> None:
    with pytest.raises(InvalidKey):
        store.put_bytes(key, b"x")
    with pytest.raises(InvalidKey):
        store.get_bytes(key)


def test_validate_key_accepts_ordinary_keys() -> None:
    for key in ["a", "jobs/0b3c/artifacts/student.safetensors", "x" * 1024, "a/..b/c..", "dir/.hidden"]:
        assert validate_key(key) == key


def test_local_store_refuses_symlinks_out_of_root(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    store = LocalStore(tmp_path / "root")
    (store.root / "link").symlink_to(outside)
    with pytest.raises(InvalidKey, match="outside"):
        store.get_bytes("link/secret.txt")
    with pytest.raises(InvalidKey, match="outside"):
        store.put_bytes("link/new.txt", b"x")
    assert not (outside / "new.txt").exists()


def test_local_store_streams_local_path_and_has_no_url(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    store.put_bytes("a/b.txt", b"hi")
    assert store.local_path("a/b.txt") == (tmp_path / "a" / "b.txt").resolve()
    assert store.presigned_url("a/b.txt", 60) is None
    with pytest.raises(ObjectNotFound):
        store.local_path("a/none.txt")
    store.check()


def test_local_check_fails_on_unwritable_root(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores permission bits; a file where the folder should be fails for everyone.
        store = LocalStore(tmp_path / "root")
        (store.root / ".gkd-tmp").rmdir() if (store.root / ".gkd-tmp").exists() else None
        (store.root / ".gkd-tmp").write_text("not a folder")
    else:
        store = LocalStore(tmp_path / "root")
        store.root.chmod(0o500)
    with pytest.raises(StorageUnavailable, match="not writable"):
        store.check()


def test_get_store_builds_the_store_the_url_names(tmp_path: Path) -> None:
    local = get_store(Settings(data_dir=tmp_path, storage_url=(tmp_path / "a b").as_uri()))
    assert isinstance(local, LocalStore) and local.root == (tmp_path / "a b").resolve()
    s3 = get_store(
        Settings(data_dir=tmp_path, storage_url="s3://bucket-x/some/prefix/", s3_endpoint_url="http://s3:9000")
    )
    assert isinstance(s3, S3Store) and (s3.bucket, s3.prefix) == ("bucket-x", "some/prefix/")
    for url, message in [("file://host/x", "names host"), ("ftp://x/y", "unsupported storage URL")]:
        with pytest.raises(StorageError, match=message):
            get_store(Settings(data_dir=tmp_path, storage_url=url))


def test_presigned_urls_name_the_public_endpoint(tmp_path: Path) -> None:
    """Inside compose the API reaches S3 as http://minio:9000; clients need a host they can resolve."""
    settings = Settings(
        data_dir=tmp_path,
        storage_url="s3://bucket-x/p",
        s3_endpoint_url="http://minio:9000",
        s3_access_key="a",
        s3_secret_key="b",
    )
    internal = get_store(settings).presigned_url("k", 60)
    assert internal is not None and internal.startswith("http://minio:9000/bucket-x/p/k?"), internal
    public_settings = settings.model_copy(update={"s3_public_endpoint_url": "https://files.example.com"})
    public = get_store(public_settings).presigned_url("k", 60)
    assert public is not None and public.startswith("https://files.example.com/bucket-x/p/k?"), public


# --------------------------------------------------------------------------- S3 only


def test_multipart_upload_above_threshold(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:
    store = make_s3_store(seaweed_s3, multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB)
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * MIB))
    stored = store.put_file("big.bin", big)
    head = seaweed_s3.client().head_object(Bucket=BUCKET, Key=store.prefix + "big.bin")
    assert head["ETag"].strip('"').endswith("-3"), f"expected 3 parts, got ETag {head['ETag']}"
    assert head["Metadata"]["sha256"] == stored.sha256 == hashlib.sha256(big.read_bytes()).hexdigest()
    got = store.get_file("big.bin", tmp_path / "back.bin")
    assert got.sha256 == stored.sha256
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()


def test_single_part_upload_carries_s3_checksum(seaweed_s3: SeaweedS3) -> None:
    store = make_s3_store(seaweed_s3)
    store.put_bytes("small", b"hello")
    head = seaweed_s3.client().head_object(Bucket=BUCKET, Key=store.prefix + "small", ChecksumMode="ENABLED")
    assert head.get("ChecksumSHA256") == "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ="  # base64 sha256("hello")


def test_tampered_object_fails_integrity_check(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:
    store = make_s3_store(seaweed_s3)
    store.put_bytes("obj", b"original")
    # Rewrite the bytes behind the store's back, keeping the old sha256 metadata.
    seaweed_s3.client().put_object(
        Bucket=BUCKET,
        Key=store.prefix + "obj",
        Body=b"tampered",
        Metadata={"sha256": hashlib.sha256(b"original").hexdigest()},
    )
    with pytest.raises(ChecksumMismatch, match="does not match"):
        store.get_bytes("obj")
    with pytest.raises(ChecksumMismatch):
        store.get_file("obj", tmp_path / "obj")
    assert not (tmp_path / "obj").exists()


def test_presigned_url_downloads_then_expires(seaweed_s3: SeaweedS3) -> None:
    store = make_s3_store(seaweed_s3)
    store.put_bytes("jobs/j/artifacts/student.onnx", b"onnx bytes")
    url = store.presigned_url("jobs/j/artifacts/student.onnx", expires_s=60)
    assert url is not None and "X-Amz-Signature" in url
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"onnx bytes"
    named = store.presigned_url("jobs/j/artifacts/student.onnx", expires_s=60, filename="student.onnx")
    answer = httpx.get(named)
    assert answer.content == b"onnx bytes"
    assert answer.headers["content-disposition"] == 'attachment; filename="student.onnx"'
    # The signing time is whole seconds, so a 1 s URL may already be stale when first used on a slow
    # machine: only its refusal after expiry is checked, against a long URL that still works.
    short = store.presigned_url("jobs/j/artifacts/student.onnx", expires_s=1)
    time.sleep(2.1)
    assert httpx.get(short).status_code == 403
    assert httpx.get(url).status_code == 200
    with pytest.raises(StorageError, match="between 1 and"):
        store.presigned_url("jobs/j/artifacts/student.onnx", expires_s=0)


def test_wrong_secret_is_refused(seaweed_s3: SeaweedS3, tmp_path: Path) -> None:
    good = make_s3_store(seaweed_s3)
    good.put_bytes("x", b"x")
    bad = S3Store(
        bucket=BUCKET,
        prefix=good.prefix,
        endpoint_url=seaweed_s3.endpoint_url,
        access_key=seaweed_s3.access_key,
        secret_key="not-the-secret",
    )
    with pytest.raises(StorageAuthError, match="GKD_S3_SECRET_KEY"):
        bad.get_bytes("x")
    with pytest.raises(StorageAuthError):
        bad.put_bytes("y", b"y")
    (tmp_path / "y").write_bytes(b"y")
    with pytest.raises(StorageAuthError):
        bad.put_file("y", tmp_path / "y")  # upload_file wraps errors in S3UploadFailedError
    with pytest.raises(StorageAuthError):
        bad.check()
    assert not good.exists("y")


def test_check_passes_and_reports_a_missing_bucket(seaweed_s3: SeaweedS3) -> None:
    make_s3_store(seaweed_s3).check()
    missing = S3Store(
        bucket=f"nobucket-{uuid.uuid4().hex[:8]}",
        endpoint_url=seaweed_s3.endpoint_url,
        access_key=seaweed_s3.access_key,
        secret_key=seaweed_s3.secret_key,
    )
    with pytest.raises(StorageError, match="does not exist"):
        missing.check()
    missing.ensure_bucket()
    missing.check()
    missing.put_bytes("k", b"v")
    assert missing.get_bytes("k") == b"v"


def test_check_fails_fast_on_a_dead_endpoint() -> None:
    (port,) = free_ports(1)  # nothing listens there
    store = S3Store(
        bucket="anything",
        endpoint_url=f"http://127.0.0.1:{port}",
        access_key="a",
        secret_key="b",
        max_attempts=2,
        check_timeout_s=1.0,
    )
    start = time.monotonic()
    with pytest.raises(StorageUnavailable, match="cannot reach"):
        store.check()
    with pytest.raises(StorageUnavailable):
        store.put_bytes("k", b"v")
    with pytest.raises(StorageUnavailable):
        store.get_file("k", Path("/nonexistent-dir/never-written"))
    assert time.monotonic() - start < 5.0


def test_bad_store_options_are_refused() -> None:
    with pytest.raises(StorageError, match="invalid bucket name"):
        S3Store(bucket="UPPER_case")
    with pytest.raises(StorageError, match="retry_mode"):
        S3Store(bucket="okbucket", retry_mode="eager")
    with pytest.raises(StorageError, match="5 MiB"):
        S3Store(bucket="okbucket", multipart_chunksize=1024)


def test_server_without_checksum_support_falls_back_to_plain_uploads(seaweed_s3: SeaweedS3) -> None:
    from botocore.stub import Stubber

    store = make_s3_store(seaweed_s3)
    with Stubber(store._client) as stub:
        stub.add_client_error("put_object", service_error_code="NotImplemented", http_status_code=501)
        stub.add_response("put_object", {"ETag": '"abc"'})
        stored = store.put_bytes("k", b"v")
        stub.assert_no_pending_responses()
    assert stored.sha256 == hashlib.sha256(b"v").hexdigest()
    assert store.checksum_algorithm is None, "later uploads skip the checksum the server refused"


def test_attachment_names_are_quoted_for_any_filename() -> None:
    assert attachment_disposition("reports/report.png") == 'attachment; filename="report.png"'
    assert attachment_disposition('a"b;c.onnx') == "attachment; filename*=UTF-8''a%22b%3Bc.onnx"
    assert attachment_disposition("schüler.onnx") == "attachment; filename*=UTF-8''sch%C3%BCler.onnx"

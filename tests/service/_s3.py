"""Shared S3 test pieces: a bucket with a small tree under a fresh prefix (the ``s3_bucket`` fixture, made
available to every service test by conftest.py) and a store wrapper that records downloads."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from service.storage import ArtifactStore, S3Store, StorageUnavailable, StoredObject
from tests.support.seaweed import SeaweedS3

BUCKET = "gkd-uri-tests"


class CountingStore:
    """Wraps a store to count downloads and optionally fail after some of them."""

    def __init__(self, inner: ArtifactStore, fail_after: int | None = None) -> None:
        self.inner = inner
        self.fetched: list[str] = []  # the keys downloaded, in order
        self.fail_after = fail_after
        self.lock = threading.Lock()  # the resolver fetches a prefix's objects from several threads

    @property
    def downloads(self) -> int:
        return len(self.fetched)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_file(self, key: str, dest: Path) -> StoredObject:
        with self.lock:
            if self.fail_after is not None and self.downloads >= self.fail_after:
                raise StorageUnavailable("connection dropped mid-download")
            self.fetched.append(key)
        return self.inner.get_file(key, dest)


@pytest.fixture
def s3_bucket(seaweed_s3: SeaweedS3) -> tuple[S3Store, str]:
    """A bucket with one object and a small dataset tree under a fresh prefix."""
    seaweed_s3.ensure_bucket(BUCKET)
    store = S3Store(
        bucket=BUCKET,
        endpoint_url=seaweed_s3.endpoint_url,
        access_key=seaweed_s3.access_key,
        secret_key=seaweed_s3.secret_key,
    )
    prefix = f"u-{uuid.uuid4().hex[:10]}"
    store.put_bytes(f"{prefix}/weights/teacher.safetensors", b"teacher")
    for name in ["images/train/a.png", "images/train/b.png", "masks/train/a.png", "classes.json"]:
        store.put_bytes(f"{prefix}/gta5/{name}", name.encode())
    return store, prefix



"""Local copies of s3:// data follow the bucket: changed objects are fetched again, unchanged ones are not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.datasets import validation_report
from service.settings import Settings
from service.storage import S3Store, StorageUnavailable
from service.uris import UriResolver
from tests.gkd_core.data import fixtures
from tests.service._s3 import BUCKET, CountingStore
from tests.support.seaweed import SeaweedS3

SECRET = "test-secret-key-0123456789abcdef"


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_prefix_copy_follows_the_bucket_fetching_only_what_changed(
    s3_bucket: tuple[S3Store, str], tmp_path: Path
) -> None:
    store, prefix = s3_bucket
    for name in ("a.png", "b.png", "c.png"):
        store.put_bytes(f"{prefix}/set/{name}", f"{name} v1".encode())
    counting = CountingStore(store)
    resolver = UriResolver(roots=[], cache_dir=tmp_path / "cache", s3_store_for_bucket=lambda _b: counting)
    uri = f"s3://{BUCKET}/{prefix}/set"
    first = resolver.resolve(uri)
    assert files(first) == {"a.png": b"a.png v1", "b.png": b"b.png v1", "c.png": b"c.png v1"}
    assert resolver.resolve(uri) == first and len(counting.fetched) == 3, "nothing changed: nothing fetched"

    store.put_bytes(f"{prefix}/set/b.png", b"b.png v2")  # rewritten
    store.put_bytes(f"{prefix}/set/d.png", b"d.png v1")  # added
    store.delete(f"{prefix}/set/c.png")  # removed
    counting.fetched.clear()
    second = resolver.resolve(uri)
    assert second != first
    assert files(second) == {"a.png": b"a.png v1", "b.png": b"b.png v2", "d.png": b"d.png v1"}
    assert sorted(counting.fetched) == [f"{prefix}/set/b.png", f"{prefix}/set/d.png"]
    assert (second / "a.png").stat().st_ino == (first / "a.png").stat().st_ino, "unchanged: linked, not copied"
    assert files(first)["b.png"] == b"b.png v1", "the previous copy stays whole for a job still reading it"

    store.put_bytes(f"{prefix}/set/a.png", b"a.png v2")
    third = resolver.resolve(uri)
    assert files(third)["a.png"] == b"a.png v2"
    assert not first.exists() and second.exists(), "only the newest and the one before are kept"


def test_a_single_object_is_fetched_again_when_rewritten(s3_bucket: tuple[S3Store, str], tmp_path: Path) -> None:
    store, prefix = s3_bucket
    store.put_bytes(f"{prefix}/w/teacher.safetensors", b"old weights")
    store.put_bytes(f"{prefix}/w/teacher.safetensors.bak", b"a neighbour sharing the key's prefix")
    resolver = UriResolver(roots=[], cache_dir=tmp_path / "cache", s3_store_for_bucket=lambda _b: store)
    uri = f"s3://{BUCKET}/{prefix}/w/teacher.safetensors"
    path = resolver.resolve(uri)
    assert path.name == "teacher.safetensors" and path.read_bytes() == b"old weights"
    assert files(path.parent) == {"teacher.safetensors": b"old weights"}
    store.put_bytes(f"{prefix}/w/teacher.safetensors", b"new weights")
    assert resolver.resolve(uri).read_bytes() == b"new weights"


def test_a_failed_update_keeps_the_previous_copy_and_is_redone_later(
    s3_bucket: tuple[S3Store, str], tmp_path: Path
) -> None:
    store, prefix = s3_bucket
    for i in range(6):
        store.put_bytes(f"{prefix}/set/{i}.png", b"v1")
    good = CountingStore(store)
    resolver = UriResolver(roots=[], cache_dir=tmp_path / "cache", s3_store_for_bucket=lambda _b: good)
    uri = f"s3://{BUCKET}/{prefix}/set"
    first = resolver.resolve(uri)
    for i in range(6):
        store.put_bytes(f"{prefix}/set/{i}.png", b"v2")
    flaky = CountingStore(store, fail_after=2)
    broken = UriResolver(roots=[], cache_dir=tmp_path / "cache", s3_store_for_bucket=lambda _b: flaky)
    with pytest.raises(StorageUnavailable):
        broken.resolve(uri)
    assert set(files(first).values()) == {b"v1"} and len(list(first.parent.iterdir())) == 3  # v1, manifest, pointer
    pointer = json.loads((first.parent / "current").read_text())
    assert pointer["version"] == first.name
    good.fetched.clear()
    again = resolver.resolve(uri)
    assert set(files(again).values()) == {b"v2"} and len(good.fetched) == 6


def test_folder_markers_are_not_files_and_a_copy_in_the_old_layout_is_removed(
    seaweed_s3: SeaweedS3, s3_bucket: tuple[S3Store, str], tmp_path: Path
) -> None:
    store, prefix = s3_bucket
    # What "Create folder" in a console writes (our own stores refuse such a key, so the raw client does).
    seaweed_s3.client().put_object(Bucket=BUCKET, Key=f"{prefix}/set/images/", Body=b"")
    store.put_bytes(f"{prefix}/set/images/a.png", b"a")
    cache = tmp_path / "cache"
    resolver = UriResolver(roots=[], cache_dir=cache, s3_store_for_bucket=lambda _b: store)
    uri = f"s3://{BUCKET}/{prefix}/set"
    digest = resolver.resolve(uri).parent.name  # cache/s3/<digest>/<version>
    (cache / digest).mkdir()  # what the first cache layout left: one folder and a marker, never refreshed
    (cache / digest / "stale.png").write_bytes(b"old")
    (cache / f"{digest}.complete").write_text(".")
    assert files(resolver.resolve(uri)) == {"images/a.png": b"a"}
    assert not (cache / digest).exists() and not (cache / f"{digest}.complete").exists()


def test_registering_again_after_fixing_the_bucket_validates_the_new_files(
    seaweed_s3: SeaweedS3, s3_bucket: tuple[S3Store, str], tmp_path: Path
) -> None:
    """The user-facing case: a set with a missing mask is fixed in the bucket and registered again."""
    store, prefix = s3_bucket
    local = fixtures.gta5(tmp_path / "gta5")
    missing = "labels/00001.png"
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        relative = path.relative_to(local).as_posix()
        if relative != missing:
            store.put_file(f"{prefix}/gta5-set/{relative}", path)
    settings = Settings(
        mode="production",
        secret_key=SECRET,
        data_dir=tmp_path / "service",
        s3_endpoint_url=seaweed_s3.endpoint_url,
        s3_access_key=seaweed_s3.access_key,
        s3_secret_key=seaweed_s3.secret_key,
    )
    uri = f"s3://{BUCKET}/{prefix}/gta5-set"
    before = validation_report(uri=uri, layout="gta5", options={}, classes=None, settings=settings)
    assert before["ok"] is False and before["problem_counts"] == {"missing_mask": 1}
    store.put_file(f"{prefix}/gta5-set/{missing}", local / missing)
    after = validation_report(uri=uri, layout="gta5", options={}, classes=None, settings=settings)
    assert after["ok"] is True, after.get("problems")


def test_what_on_file_raises_stops_a_download_and_keeps_no_copy(s3_bucket: tuple[S3Store, str], tmp_path: Path) -> None:
    store, prefix = s3_bucket
    for i in range(40):
        store.put_bytes(f"{prefix}/set/{i:02d}.png", b"x")
    counting = CountingStore(store)
    resolver = UriResolver(
        roots=[], cache_dir=tmp_path / "cache", s3_store_for_bucket=lambda _b: counting, download_concurrency=4
    )
    started: list[None] = []

    class Abandoned(Exception):
        pass

    def stop_after_five() -> None:
        if len(started) == 5:
            raise Abandoned
        started.append(None)

    with pytest.raises(Abandoned):
        resolver.resolve(f"s3://{BUCKET}/{prefix}/set", on_file=stop_after_five)
    assert len(counting.fetched) <= 5 and not list((tmp_path / "cache").rglob("current"))  # queued ones cancelled
    assert len(list(resolver.resolve(f"s3://{BUCKET}/{prefix}/set").iterdir())) == 40


def test_a_bucket_put_back_as_it_was_reuses_the_copy_kept(s3_bucket: tuple[S3Store, str], tmp_path: Path) -> None:
    store, prefix = s3_bucket
    store.put_bytes(f"{prefix}/back/a.png", b"v1")
    counting = CountingStore(store)
    resolver = UriResolver(roots=[], cache_dir=tmp_path / "cache", s3_store_for_bucket=lambda _b: counting)
    uri = f"s3://{BUCKET}/{prefix}/back"
    first = resolver.resolve(uri)
    inode = (first / "a.png").stat().st_ino
    store.put_bytes(f"{prefix}/back/a.png", b"v2")
    assert files(resolver.resolve(uri)) == {"a.png": b"v2"}
    store.put_bytes(f"{prefix}/back/a.png", b"v1")  # the same bytes again: the same ETag and size
    counting.fetched.clear()
    again = resolver.resolve(uri)
    assert again == first and (again / "a.png").stat().st_ino == inode, "the kept copy, not a rebuilt one"
    assert counting.fetched == [] and files(again) == {"a.png": b"v1"}

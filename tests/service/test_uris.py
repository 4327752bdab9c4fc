"""URI resolution: allowed roots hold against traversal; s3:// downloads once; artifact:// checks owners."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from service.settings import Settings
from service.storage import LocalStore, S3Store, StorageUnavailable
from service.uris import (
    PathNotAllowed,
    UnsupportedUri,
    UriNotFound,
    UriResolver,
    allowed_roots,
    artifact_key,
)
from tests.service._s3 import BUCKET, CountingStore
from tests.support.seaweed import SeaweedS3

SECRET = "test-secret-key-0123456789abcdef"


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """An allowed root with a dataset, and a secret outside it."""
    root = tmp_path / "datasets"
    (root / "cityscapes" / "images").mkdir(parents=True)
    (root / "cityscapes" / "images" / "a.png").write_bytes(b"png")
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    return {"root": root, "outside": outside, "cache": tmp_path / "cache"}


def test_file_uri_under_root_resolves(tree: dict[str, Path]) -> None:
    resolver = UriResolver(roots=[tree["root"]], cache_dir=tree["cache"])
    assert resolver.resolve(f"file://{tree['root']}/cityscapes") == (tree["root"] / "cityscapes").resolve()
    assert resolver.resolve(f"file://localhost{tree['root']}/cityscapes/images/a.png").read_bytes() == b"png"
    # '..' that stays inside the root is fine: only the resolved location matters.
    assert (
        resolver.resolve(f"file://{tree['root']}/cityscapes/images/../images")
        == (tree["root"] / "cityscapes" / "images").resolve()
    )


@pytest.mark.parametrize(
    "suffix",
    [
        "/../private/secret.txt",
        "/cityscapes/../../private/secret.txt",
        "/%2e%2e/private/secret.txt",
        "/%2E%2E%2Fprivate%2Fsecret.txt",
        "/cityscapes/%2e%2e/%2e%2e/private",
    ],
)
def test_traversal_out_of_root_is_refused(tree: dict[str, Path], suffix: str) -> None:
    resolver = UriResolver(roots=[tree["root"]], cache_dir=tree["cache"])
    with pytest.raises(PathNotAllowed, match="outside the allowed roots"):
        resolver.resolve(f"file://{tree['root']}{suffix}")


def test_symlink_out_of_root_is_refused(tree: dict[str, Path]) -> None:
    (tree["root"] / "shortcut").symlink_to(tree["outside"])
    (tree["root"] / "secret-link").symlink_to(tree["outside"] / "secret.txt")
    resolver = UriResolver(roots=[tree["root"]], cache_dir=tree["cache"])
    for uri in [f"file://{tree['root']}/shortcut/secret.txt", f"file://{tree['root']}/secret-link"]:
        with pytest.raises(PathNotAllowed):
            resolver.resolve(uri)


def test_root_prefix_lookalike_is_refused(tree: dict[str, Path]) -> None:
    """'/x/datasets-evil' starts with the string '/x/datasets' but is not inside it."""
    evil = tree["root"].parent / "datasets-evil"
    evil.mkdir()
    resolver = UriResolver(roots=[tree["root"]], cache_dir=tree["cache"])
    with pytest.raises(PathNotAllowed):
        resolver.resolve(f"file://{evil}")


@pytest.mark.parametrize(
    ("uri", "error", "message"),
    [
        ("file://otherhost/data", UnsupportedUri, "names host"),
        ("file:relative/path", UnsupportedUri, "not an absolute path"),
        ("file:///data?x=1", UnsupportedUri, "percent-encode"),
        ("file:///data/a%00b", UnsupportedUri, "absolute path"),
        ("http://example.com/x", UnsupportedUri, "unsupported URI"),
        ("/plain/path", UnsupportedUri, "unsupported URI"),
        ("s3:///key", UnsupportedUri, "no bucket"),
        ("s3://bucket/../x", UnsupportedUri, "segment"),
        ("artifact://job1/../secret", UnsupportedUri, "invalid artifact name"),
        ("artifact://job%2F1/student", UnsupportedUri, "invalid job id"),
    ],
)
def test_malformed_uris_get_specific_errors(
    tree: dict[str, Path], uri: str, error: type[Exception], message: str
) -> None:
    resolver = UriResolver(roots=[tree["root"]], cache_dir=tree["cache"])
    with pytest.raises(error, match=message):
        resolver.resolve(uri)


def test_missing_file_under_root(tree: dict[str, Path]) -> None:
    resolver = UriResolver(roots=[tree["root"]], cache_dir=tree["cache"])
    with pytest.raises(UriNotFound, match="does not exist"):
        resolver.resolve(f"file://{tree['root']}/nope")


def test_allowed_roots_include_data_dir_only_when_embedded(tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    embedded = Settings(mode="embedded", data_dir=tmp_path / "home", allowed_roots=[extra])
    production = Settings(mode="production", data_dir=tmp_path / "home", allowed_roots=[extra], secret_key=SECRET)
    assert allowed_roots(embedded) == [extra.resolve(), (tmp_path / "home").resolve()]
    assert allowed_roots(production) == [extra.resolve()]
    resolver = UriResolver.from_settings(production)
    (tmp_path / "home").mkdir()
    with pytest.raises(PathNotAllowed):
        resolver.resolve(f"file://{tmp_path / 'home'}")
    assert resolver.cache_dir == tmp_path / "home" / "cache"


# --------------------------------------------------------------------------- artifact://


def test_artifact_uri_maps_to_the_jobs_storage_key(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "artifacts")
    job = str(uuid.uuid4())
    store.put_bytes(artifact_key(job, "student.safetensors"), b"weights")
    owned = {job}
    resolver = UriResolver(
        roots=[], cache_dir=tmp_path / "cache", artifact_store=store, can_access_job=lambda j: j in owned
    )
    path = resolver.resolve(f"artifact://{job}/student.safetensors")
    assert path.read_bytes() == b"weights"
    assert path == store.root / "jobs" / job / "artifacts" / "student.safetensors"
    with pytest.raises(UriNotFound, match="has no artifact"):
        resolver.resolve(f"artifact://{job}/missing.onnx")
    owned.clear()  # another team's job: same answer as a missing artifact
    with pytest.raises(UriNotFound, match=r"has no artifact 'student\.safetensors'"):
        resolver.resolve(f"artifact://{job}/student.safetensors")


def test_artifact_uri_without_owner_check_is_refused(tmp_path: Path) -> None:
    resolver = UriResolver(roots=[], cache_dir=tmp_path, artifact_store=LocalStore(tmp_path / "a"))
    with pytest.raises(UnsupportedUri, match="ownership check"):
        resolver.resolve("artifact://job1/student.safetensors")


# --------------------------------------------------------------------------- s3:// against SeaweedFS


def test_s3_object_is_downloaded_once(s3_bucket: tuple[S3Store, str], tmp_path: Path) -> None:
    store, prefix = s3_bucket
    counting = CountingStore(store)
    resolver = UriResolver(roots=[], cache_dir=tmp_path / "cache", s3_store_for_bucket=lambda _b: counting)
    uri = f"s3://{BUCKET}/{prefix}/weights/teacher.safetensors"
    first = resolver.resolve(uri)
    assert first.name == "teacher.safetensors" and first.read_bytes() == b"teacher"
    assert first.is_relative_to(tmp_path / "cache")
    assert resolver.resolve(uri) == first
    assert counting.downloads == 1


def test_s3_prefix_is_mirrored_as_a_folder(s3_bucket: tuple[S3Store, str], tmp_path: Path) -> None:
    store, prefix = s3_bucket
    resolver = UriResolver(roots=[], cache_dir=tmp_path / "cache", s3_store_for_bucket=lambda _b: store)
    for uri in [f"s3://{BUCKET}/{prefix}/gta5", f"s3://{BUCKET}/{prefix}/gta5/"]:
        folder = resolver.resolve(uri)
        files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
        assert files == ["classes.json", "images/train/a.png", "images/train/b.png", "masks/train/a.png"]
        assert (folder / "images/train/b.png").read_bytes() == b"images/train/b.png"
    with pytest.raises(UriNotFound, match="no objects under"):
        resolver.resolve(f"s3://{BUCKET}/{prefix}/nothing-here")


def test_interrupted_download_is_redone(s3_bucket: tuple[S3Store, str], tmp_path: Path) -> None:
    store, prefix = s3_bucket
    uri = f"s3://{BUCKET}/{prefix}/gta5"
    flaky = CountingStore(store, fail_after=2)
    resolver = UriResolver(roots=[], cache_dir=tmp_path / "cache", s3_store_for_bucket=lambda _b: flaky)
    with pytest.raises(StorageUnavailable):
        resolver.resolve(uri)
    assert not list((tmp_path / "cache").rglob("current")), "no copy is complete"
    # A crash (no cleanup at all) during downloads leaves a half-filled version folder without its manifest
    # (written after the last object) or the pointer: simulate it, then retry.
    good = CountingStore(store)
    resolver = UriResolver(roots=[], cache_dir=tmp_path / "cache", s3_store_for_bucket=lambda _b: good)
    folder = resolver.resolve(uri)
    assert good.downloads == 4
    (folder.parent / "current").unlink()
    (folder.parent / f"{folder.name}.manifest").unlink()
    (folder / "stale.tmp").write_bytes(b"half")
    again = resolver.resolve(uri)
    assert good.downloads == 8, "no complete copy: everything downloaded again"
    assert not (again / "stale.tmp").exists()
    # A crash after the manifest but before the pointer: the copy is complete, nothing is fetched again.
    (again.parent / "current").unlink()
    assert resolver.resolve(uri) == again and good.downloads == 8


def test_s3_uri_from_settings_uses_the_configured_endpoint(
    seaweed_s3: SeaweedS3, s3_bucket: tuple[S3Store, str], tmp_path: Path
) -> None:
    _, prefix = s3_bucket
    settings = Settings(
        mode="production",
        secret_key=SECRET,
        data_dir=tmp_path,
        s3_endpoint_url=seaweed_s3.endpoint_url,
        s3_access_key=seaweed_s3.access_key,
        s3_secret_key=seaweed_s3.secret_key,
    )
    path = UriResolver.from_settings(settings).resolve(f"s3://{BUCKET}/{prefix}/weights/teacher.safetensors")
    assert path.read_bytes() == b"teacher"
    assert path.is_relative_to(tmp_path / "cache")


# --------------------------------------------------------------------------- the service's own files


def test_the_services_own_files_are_never_a_users_data(tmp_path: Path) -> None:
    """Every team's artifacts, the download cache, scratch and the database live in the data folder, an allowed
    root when embedded: naming them, or a folder that holds them, is refused; the users' data beside them is not."""
    home = tmp_path / "home"
    settings = Settings(mode="embedded", data_dir=home, allowed_roots=[tmp_path])
    for folder in ("artifacts/jobs/victim/artifacts", "cache", "work", "bench/toon"):
        (home / folder).mkdir(parents=True)
    (home / "gkd.db").write_bytes(b"")
    (home / "artifacts/jobs/victim/artifacts/student.safetensors").write_bytes(b"weights")
    resolver = UriResolver.from_settings(settings)
    assert resolver.resolve(f"file://{home / 'bench/toon'}") == (home / "bench/toon").resolve()
    for owned in ("artifacts/jobs", "artifacts/jobs/victim/artifacts/student.safetensors", "cache", "work", "gkd.db"):
        with pytest.raises(PathNotAllowed, match="service's own files"):
            resolver.resolve(f"file://{home / owned}")
    for holder in (home, tmp_path):  # a folder that holds them would list them too
        with pytest.raises(PathNotAllowed, match="service's own files"):
            resolver.resolve(f"file://{holder}")


def test_the_services_own_artifact_bucket_is_never_a_users_data(
    seaweed_s3: SeaweedS3, s3_bucket: tuple[S3Store, str], tmp_path: Path
) -> None:
    store, prefix = s3_bucket
    settings = Settings(
        mode="production",
        secret_key=SECRET,
        data_dir=tmp_path,
        storage_url=f"s3://{BUCKET}/{prefix}/platform",
        s3_endpoint_url=seaweed_s3.endpoint_url,
        s3_access_key=seaweed_s3.access_key,
        s3_secret_key=seaweed_s3.secret_key,
    )
    store.put_bytes(f"{prefix}/platform/jobs/victim/artifacts/student.safetensors", b"someone else's")
    resolver = UriResolver.from_settings(settings)
    for uri in (
        f"s3://{BUCKET}/{prefix}/platform/jobs/victim/artifacts/student.safetensors",
        f"s3://{BUCKET}/{prefix}/platform/",
        f"s3://{BUCKET}/{prefix}/plat",  # a listing prefix that takes in the store's area
        f"s3://{BUCKET}/",
    ):
        with pytest.raises(PathNotAllowed, match="service's own artifact store"):
            resolver.resolve(uri)
    assert resolver.resolve(f"s3://{BUCKET}/{prefix}/weights/teacher.safetensors").read_bytes() == b"teacher"


def test_an_allow_list_of_buckets_refuses_every_other_bucket(
    seaweed_s3: SeaweedS3, s3_bucket: tuple[S3Store, str], tmp_path: Path
) -> None:
    _, prefix = s3_bucket
    common: dict[str, Any] = {
        "mode": "production",
        "secret_key": SECRET,
        "data_dir": tmp_path,
        "s3_endpoint_url": seaweed_s3.endpoint_url,
        "s3_access_key": seaweed_s3.access_key,
        "s3_secret_key": seaweed_s3.secret_key,
    }
    uri = f"s3://{BUCKET}/{prefix}/weights/teacher.safetensors"
    elsewhere = UriResolver.from_settings(Settings.model_validate({**common, "s3_allowed_buckets": "datasets-a,x"}))
    with pytest.raises(PathNotAllowed, match="GKD_S3_ALLOWED_BUCKETS"):
        elsewhere.resolve(uri)
    listed = UriResolver.from_settings(Settings(**common, s3_allowed_buckets=["datasets-a", BUCKET]))
    assert listed.resolve(uri).read_bytes() == b"teacher"


def test_a_large_prefix_is_fetched_side_by_side_and_completely(
    s3_bucket: tuple[S3Store, str], tmp_path: Path
) -> None:
    store, prefix = s3_bucket
    names = [f"images/train/{i:04d}.png" for i in range(150)]
    for name in names:
        store.put_bytes(f"{prefix}/many/{name}", name.encode())
    counting = CountingStore(store)
    resolver = UriResolver(
        roots=[], cache_dir=tmp_path / "cache", s3_store_for_bucket=lambda _b: counting, download_concurrency=8
    )
    folder = resolver.resolve(f"s3://{BUCKET}/{prefix}/many")
    assert counting.downloads == 150
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == names
    assert all((folder / name).read_bytes() == name.encode() for name in names)
    flaky = CountingStore(store, fail_after=40)
    other = UriResolver(
        roots=[], cache_dir=tmp_path / "other", s3_store_for_bucket=lambda _b: flaky, download_concurrency=8
    )
    with pytest.raises(StorageUnavailable):
        other.resolve(f"s3://{BUCKET}/{prefix}/many")
    assert flaky.downloads == 40 and not list((tmp_path / "other").rglob("current"))  # the rest cancelled


# --------------------------------------------------------------------------- one team's data


def test_a_root_or_bucket_naming_team_is_that_teams_only(
    seaweed_s3: SeaweedS3, s3_bucket: tuple[S3Store, str], tmp_path: Path
) -> None:
    """``{team}`` in GKD_ALLOWED_ROOTS / GKD_S3_ALLOWED_BUCKETS: each team reads its own folder or bucket."""
    for team in ("vision", "audio"):
        (tmp_path / "teams" / team / "set").mkdir(parents=True)
    settings = Settings(
        mode="production",
        secret_key=SECRET,
        data_dir=tmp_path / "service",
        allowed_roots=[tmp_path / "teams" / "{team}", tmp_path / "shared"],
        s3_allowed_buckets=[BUCKET.replace("tests", "{team}")],  # gkd-uri-{team}
        s3_endpoint_url=seaweed_s3.endpoint_url,
        s3_access_key=seaweed_s3.access_key,
        s3_secret_key=seaweed_s3.secret_key,
    )
    vision = UriResolver.from_settings(settings, team="vision")
    assert vision.resolve(f"file://{tmp_path}/teams/vision/set") == (tmp_path / "teams/vision/set").resolve()
    with pytest.raises(PathNotAllowed, match="outside the allowed roots"):
        vision.resolve(f"file://{tmp_path}/teams/audio/set")
    with pytest.raises(PathNotAllowed, match="outside the allowed roots"):
        UriResolver.from_settings(settings).resolve(f"file://{tmp_path}/teams/vision/set")  # no team: no {team} root
    _, prefix = s3_bucket
    uri = f"s3://{BUCKET}/{prefix}/weights/teacher.safetensors"
    assert UriResolver.from_settings(settings, team="tests").resolve(uri).read_bytes() == b"teacher"
    with pytest.raises(PathNotAllowed, match="gkd-uri-vision"):
        vision.resolve(uri)
    with pytest.raises(PathNotAllowed, match="none for you"):
        UriResolver.from_settings(settings).resolve(uri)  # a configured list never turns into "any bucket"


def test_registration_and_the_worker_resolve_for_the_datasets_team(tmp_path: Path) -> None:
    from service.auth import create_api_key
    from service.datasets import UriRejected, validation_report
    from service.db import upgrade_database
    from tests.gkd_core.data import fixtures
    from worker.context import WorkerContext

    fixtures.folder(tmp_path / "teams" / "vision" / "toon")
    settings = Settings(data_dir=tmp_path / "service", allowed_roots=[tmp_path / "teams" / "{team}"])
    uri = (tmp_path / "teams" / "vision" / "toon").as_uri()
    report = validation_report(uri=uri, layout="folder", options={}, classes=None, settings=settings, team="vision")
    assert report["ok"] is True
    with pytest.raises(UriRejected, match="outside the allowed roots"):
        validation_report(uri=uri, layout="folder", options={}, classes=None, settings=settings, team="audio")
    upgrade_database(settings)
    context = WorkerContext(settings)
    with context.session() as session:
        vision_id = create_api_key(session=session, team_name="vision")[1].team_id
        audio_id = create_api_key(session=session, team_name="audio")[1].team_id
    assert context.resolver(team_id=vision_id).resolve(uri).is_dir()
    with pytest.raises(PathNotAllowed):
        context.resolver(team_id=audio_id).resolve(uri)

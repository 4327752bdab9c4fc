"""A checkpoint push survives files the trainer prunes between listing them and uploading them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.storage import LocalStore
from worker.work_dir_sync import WorkDirSync, checkpoint_prefix


def test_a_file_pruned_mid_push_is_skipped_and_left_out_of_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    (work / "checkpoints").mkdir(parents=True)
    old, new = work / "checkpoints" / "step2.pt", work / "checkpoints" / "step4.pt"
    old.write_bytes(b"old")
    new.write_bytes(b"new")
    store = LocalStore(tmp_path / "store")
    sync = WorkDirSync(store, "job-1", work)
    listed = sync._local_files()

    def listing_then_prune() -> list[Path]:  # the trainer's rotation removes step2 right after the listing
        old.unlink()
        return listed

    monkeypatch.setattr(sync, "_local_files", listing_then_prune)
    assert sync.push() == 1
    manifest = json.loads(store.get_bytes(f"{checkpoint_prefix('job-1')}/manifest.json"))
    assert list(manifest["files"]) == ["checkpoints/step4.pt"]


class _KilledBeforeManifest(Exception):
    pass


def test_a_worker_killed_between_a_rewrite_upload_and_the_manifest_resumes_from_the_last_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``*.latest.json`` is rewritten in place; its new upload must not replace what the manifest names."""
    work = tmp_path / "work"
    (work / "checkpoints").mkdir(parents=True)
    pointer = work / "checkpoints" / "stage1b.latest.json"
    pointer.write_text('{"step": 10}')
    store = LocalStore(tmp_path / "store")
    sync = WorkDirSync(store, "job-1", work)
    sync.push()
    pointer.write_text('{"step": 20, "longer": true}')
    manifest_key = f"{checkpoint_prefix('job-1')}/manifest.json"
    real_put_bytes = store.put_bytes

    def killed(key: str, data: bytes) -> object:
        if key == manifest_key:
            raise _KilledBeforeManifest
        return real_put_bytes(key, data)

    monkeypatch.setattr(store, "put_bytes", killed)
    with pytest.raises(_KilledBeforeManifest):
        sync.push()  # the new version is uploaded, the worker dies before the manifest
    monkeypatch.setattr(store, "put_bytes", real_put_bytes)

    resumed = tmp_path / "resumed"
    assert WorkDirSync(store, "job-1", resumed).pull() == 1  # the old layout raised: sha256 mismatch
    assert (resumed / "checkpoints" / "stage1b.latest.json").read_text() == '{"step": 10}'


def test_a_completed_push_deletes_the_version_it_supersedes(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    state = work / "state.json"
    state.write_text("v1")
    store = LocalStore(tmp_path / "store")
    sync = WorkDirSync(store, "job-1", work)
    sync.push()
    state.write_text("version 2")
    sync.push()
    objects = [k for k in store.list(checkpoint_prefix("job-1")) if "/files/" in k]
    assert len(objects) == 1 and objects[0].endswith(f"-{len('version 2')}")
    assert WorkDirSync(store, "job-1", tmp_path / "again").pull() == 1
    assert (tmp_path / "again" / "state.json").read_text() == "version 2"


def test_a_manifest_of_the_earlier_layout_still_pulls(tmp_path: Path) -> None:
    """Jobs checkpointed before versioned object names (``files/<rel>``, no ``objects``) resume after an upgrade."""
    store = LocalStore(tmp_path / "store")
    stored = store.put_bytes(f"{checkpoint_prefix('job-1')}/files/checkpoints/a.json", b"{}")
    manifest = {"files": {"checkpoints/a.json": stored.sha256}}
    store.put_bytes(f"{checkpoint_prefix('job-1')}/manifest.json", json.dumps(manifest).encode())
    assert WorkDirSync(store, "job-1", tmp_path / "w").pull() == 1
    assert (tmp_path / "w" / "checkpoints" / "a.json").read_text() == "{}"


def test_a_manifest_naming_another_files_object_is_refused(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "store")
    stored = store.put_bytes(f"{checkpoint_prefix('job-1')}/files/secret.bin", b"x")
    manifest = {"files": {"a.json": stored.sha256}, "objects": {"a.json": "secret.bin"}}
    store.put_bytes(f"{checkpoint_prefix('job-1')}/manifest.json", json.dumps(manifest).encode())
    with pytest.raises(ValueError, match="names object"):
        WorkDirSync(store, "job-1", tmp_path / "w").pull()


def _manifest_files(store: LocalStore, job_id: str) -> set[str]:
    return set(json.loads(store.get_bytes(f"{checkpoint_prefix(job_id)}/manifest.json"))["files"])


def test_checkpoints_ahead_of_the_reported_one_wait_for_their_own_report(tmp_path: Path) -> None:
    """The rank wrote step 20 while the worker was storing step 15: 20's loss rows are not recorded yet."""
    work = tmp_path / "work"
    (work / "checkpoints" / "stage1").mkdir(parents=True)
    for step in (15, 20):
        (work / "checkpoints" / "stage1" / f"stage1b-step{step}.pt").write_bytes(b"x" * step)
    (work / "checkpoints" / "stage1" / "stage1a-step30.pt").write_bytes(b"other stage")
    store = LocalStore(tmp_path / "store")
    sync = WorkDirSync(store, "job-1", work)
    sync.push(up_to=("stage1b", 15))
    assert _manifest_files(store, "job-1") == {
        "checkpoints/stage1/stage1b-step15.pt",
        "checkpoints/stage1/stage1a-step30.pt",  # another stage's files are not held
    }
    sync.push(up_to=("stage1b", 20))  # its own report
    assert "checkpoints/stage1/stage1b-step20.pt" in _manifest_files(store, "job-1")


def test_a_newer_checkpoint_is_stored_when_the_reported_one_was_pruned_already(tmp_path: Path) -> None:
    work = tmp_path / "work"
    (work / "ck").mkdir(parents=True)
    (work / "ck" / "stage1b-step20.pt").write_bytes(b"20")  # 15 is gone: 20 beats nothing
    store = LocalStore(tmp_path / "store")
    WorkDirSync(store, "job-1", work).push(up_to=("stage1b", 15))
    assert _manifest_files(store, "job-1") == {"ck/stage1b-step20.pt"}

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

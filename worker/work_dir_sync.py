"""Mirror a job's local work folder (checkpoints, stage state) to artifact storage, and back.

gkd_core checkpoints into ``work_dir``; a worker can die at any moment and the next attempt may run
on another host. After every checkpoint the worker pushes the files that changed, then writes a
small manifest listing every file with its sha256 (object first, manifest last, so a manifest
never names a half-written object). A resumed attempt pulls what the manifest lists.

Each version of a file is a new object (``files/<rel>@<mtime_ns>-<size>``): files the trainer rewrites
in place (``*.latest.json``, the stage state) would otherwise overwrite the very object the current
manifest names, and a worker killed between that upload and the next manifest left a manifest whose
sha256 no longer matched (the resumed attempt failed). The version a new manifest supersedes is deleted
after that manifest is written. Manifests from before this layout (no ``objects``) name ``files/<rel>``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from service.storage import ArtifactStore, ObjectNotFound

_logger = logging.getLogger(__name__)

_SKIP_DIRS = {"export"}  # exports become artifacts; they are not resume state


def checkpoint_prefix(job_id: str) -> str:
    """Storage prefix of a job's resume state."""
    return f"jobs/{job_id}/checkpoints"


@dataclass
class WorkDirSync:
    """Push changed files of ``work_dir`` to ``jobs/<id>/checkpoints/`` and pull them back."""

    store: ArtifactStore
    job_id: str
    work_dir: Path
    _pushed: dict[str, tuple[int, int]] = field(default_factory=dict)  # rel path -> (size, mtime_ns)
    _hashes: dict[str, str] = field(default_factory=dict)
    _objects: dict[str, str] = field(default_factory=dict)  # rel path -> object name under files/

    @property
    def manifest_key(self) -> str:
        return f"{checkpoint_prefix(self.job_id)}/manifest.json"

    def _local_files(self) -> list[Path]:
        files = []
        for path in sorted(self.work_dir.rglob("*")):
            rel = path.relative_to(self.work_dir)
            if not path.is_file() or rel.parts[0] in _SKIP_DIRS or path.name.endswith(".tmp"):
                continue
            files.append(path)
        return files

    def _key(self, name: str) -> str:
        return f"{checkpoint_prefix(self.job_id)}/files/{name}"

    def push(self) -> int:
        """Upload new or changed files, then the manifest; returns how many files were uploaded."""
        uploaded = 0
        present: set[str] = set()
        superseded: list[str] = []
        for path in self._local_files():
            rel = path.relative_to(self.work_dir).as_posix()
            try:
                stat = path.stat()
                signature = (stat.st_size, stat.st_mtime_ns)
                if self._pushed.get(rel) == signature:
                    present.add(rel)
                    continue
                name = f"{rel}@{stat.st_mtime_ns}-{stat.st_size}"
                stored = self.store.put_file(self._key(name), path)
            except FileNotFoundError:  # the trainer pruned it between the listing and the upload: not state
                continue
            present.add(rel)
            previous = self._objects.get(rel)
            if previous is not None and previous != name:
                superseded.append(previous)
            self._pushed[rel], self._hashes[rel], self._objects[rel] = signature, stored.sha256, name
            uploaded += 1
        # Files the trainer pruned locally drop out of the manifest (their objects stay until cleanup).
        listed = [rel for rel in sorted(present) if rel in self._hashes]
        manifest = {
            "files": {rel: self._hashes[rel] for rel in listed},
            "objects": {rel: self._objects[rel] for rel in listed},
        }
        self.store.put_bytes(self.manifest_key, json.dumps(manifest, sort_keys=True).encode())
        for name in superseded:  # no manifest names them any more
            self.store.delete(self._key(name))
        return uploaded

    def pull(self) -> int:
        """Download every file the manifest lists into ``work_dir``; returns the number of files."""
        try:
            raw = self.store.get_bytes(self.manifest_key)
        except ObjectNotFound:  # a first attempt has nothing to pull
            return 0
        manifest = json.loads(raw)
        files: dict[str, str] = manifest["files"]
        objects: dict[str, str] = manifest.get("objects", {})
        root = self.work_dir.resolve()
        for rel, sha in files.items():
            dest = (self.work_dir / rel).resolve()
            if root not in dest.parents:
                raise ValueError(f"manifest of job {self.job_id} names a path outside the work folder: {rel!r}")
            name = objects.get(rel, rel)
            if name != rel and not (name.startswith(f"{rel}@") and "/" not in name[len(rel) :]):
                raise ValueError(f"manifest of job {self.job_id} names object {name!r} for {rel!r}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            stored = self.store.get_file(self._key(name), dest)
            if stored.sha256 != sha:
                raise ValueError(f"checkpoint file {rel} of job {self.job_id} does not match its manifest sha256")
            stat = dest.stat()
            self._pushed[rel], self._hashes[rel] = (stat.st_size, stat.st_mtime_ns), sha
            self._objects[rel] = name
        _logger.info("job %s: pulled %d resume files", self.job_id, len(files))
        return len(files)

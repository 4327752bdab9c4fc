"""Mirror a job's local work folder (checkpoints, stage state) to artifact storage, and back.

gkd_core checkpoints into ``work_dir``; a worker can die at any moment and the next attempt may run
on another host. After every checkpoint the worker pushes the files that changed, then writes a
small manifest listing every file with its sha256 (object first, manifest last, so a manifest
never names a half-written object). A resumed attempt pulls what the manifest lists.
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

    def push(self) -> int:
        """Upload new or changed files, then the manifest; returns how many files were uploaded."""
        uploaded = 0
        present: set[str] = set()
        for path in self._local_files():
            rel = path.relative_to(self.work_dir).as_posix()
            try:
                stat = path.stat()
                signature = (stat.st_size, stat.st_mtime_ns)
                if self._pushed.get(rel) == signature:
                    present.add(rel)
                    continue
                stored = self.store.put_file(f"{checkpoint_prefix(self.job_id)}/files/{rel}", path)
            except FileNotFoundError:  # the trainer pruned it between the listing and the upload: not state
                continue
            present.add(rel)
            self._pushed[rel], self._hashes[rel] = signature, stored.sha256
            uploaded += 1
        # Files the trainer pruned locally drop out of the manifest (their objects stay until cleanup).
        manifest = {rel: self._hashes[rel] for rel in sorted(present) if rel in self._hashes}
        self.store.put_bytes(self.manifest_key, json.dumps({"files": manifest}, sort_keys=True).encode())
        return uploaded

    def pull(self) -> int:
        """Download every file the manifest lists into ``work_dir``; returns the number of files."""
        try:
            raw = self.store.get_bytes(self.manifest_key)
        except ObjectNotFound:  # a first attempt has nothing to pull
            return 0
        files: dict[str, str] = json.loads(raw)["files"]
        root = self.work_dir.resolve()
        for rel, sha in files.items():
            dest = (self.work_dir / rel).resolve()
            if root not in dest.parents:
                raise ValueError(f"manifest of job {self.job_id} names a path outside the work folder: {rel!r}")
            dest.parent.mkdir(parents=True, exist_ok=True)
            stored = self.store.get_file(f"{checkpoint_prefix(self.job_id)}/files/{rel}", dest)
            if stored.sha256 != sha:
                raise ValueError(f"checkpoint file {rel} of job {self.job_id} does not match its manifest sha256")
            stat = dest.stat()
            self._pushed[rel], self._hashes[rel] = (stat.st_size, stat.st_mtime_ns), sha
        _logger.info("job %s: pulled %d resume files", self.job_id, len(files))
        return len(files)

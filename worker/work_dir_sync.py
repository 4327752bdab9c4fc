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
import re
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

    def _held_back(self, files: list[Path], up_to: tuple[str, int] | None) -> set[str]:
        """Checkpoint files of stage ``up_to[0]`` from steps after ``up_to[1]``, when one at or before it exists.

        The trainer runs ahead of the reports the worker replays: when checkpoint N is replayed, the rank
        may already have written N+5 to disk, and its metric rows are not recorded yet. Storing that file
        would let a resumed attempt start after steps whose loss rows were never written (a gap in the
        curve, seen in tests/e2e/test_kill_resume.py). It is stored with its own report instead, unless
        nothing at or before N is left on disk (the trainer pruned it), where a newer checkpoint beats none.
        """
        if up_to is None:
            return set()
        stage, step = up_to
        pattern = re.compile(rf"^{re.escape(stage)}-step(\d+)\.pt$")
        steps = {
            path.relative_to(self.work_dir).as_posix(): int(match.group(1))
            for path in files
            if (match := pattern.match(path.name))
        }
        if not any(n <= step for n in steps.values()):
            return set()
        return {rel for rel, n in steps.items() if n > step}

    def push(self, *, up_to: tuple[str, int] | None = None) -> int:
        """Upload new or changed files, then the manifest; returns how many files were uploaded.

        ``up_to`` (stage, step) is the checkpoint being reported: later checkpoints of that stage wait
        for their own report (see :meth:`_held_back`).
        """
        uploaded = 0
        present: set[str] = set()
        superseded: list[str] = []
        files = self._local_files()
        held = self._held_back(files, up_to)
        for path in files:
            rel = path.relative_to(self.work_dir).as_posix()
            if rel in held:
                continue
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

"""A local copy of an s3:// object or prefix that follows the bucket.

A copy that never looked at the bucket again would go stale: a team that uploads the masks its set
was missing and registers it again would be shown the old problems, and workers would train on the
old files. So each resolve lists the remote objects (key, size and ETag: one LIST request per 1000
objects) and compares them with the manifest of the newest complete copy. When nothing changed that
copy is used as it is; otherwise a new version folder is built in which unchanged files are hard
links into the previous version and only new or changed objects are downloaded. The previous version
is kept, so a job on this host still reading it goes on; older ones are removed.

Layout under a URI's folder: ``<version>/`` (a complete copy), ``<version>.manifest`` (one
``tag<TAB>size<TAB>relative key`` line per object), and ``current`` (the newest complete version and
the result's path inside it), replaced only after its folder and manifest are complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.storage import ArtifactStore, ObjectVersion, validate_key

__all__ = ["RemoteTree", "fetch_all", "list_remote", "mirror"]

_logger = logging.getLogger(__name__)

POINTER = "current"
_MANIFEST_SUFFIX = ".manifest"


@dataclass(frozen=True)
class RemoteTree:
    """What a listing found for one URI: its objects, the key prefix cut off to give each file's path in
    the copy, and the result's path inside the copy (``"."`` for a prefix, the file name for one object)."""

    objects: list[ObjectVersion]
    strip: str
    path: str

    def relative(self, obj: ObjectVersion) -> str:
        return validate_key(obj.key[len(self.strip) :])

    def version(self) -> str:
        """Changes whenever any object is added, removed or rewritten."""
        digest = hashlib.sha256(self.path.encode())
        for obj in self.objects:
            digest.update(f"\n{obj.tag}\t{obj.size}\t{self.relative(obj)}".encode())
        return digest.hexdigest()[:20]


def list_remote(store: ArtifactStore, key: str) -> RemoteTree | None:
    """The object ``key`` names, or else the objects under ``key/``; None when there is neither.

    One listing serves both readings: ``key``'s own listing holds the object and everything under ``key/``.
    Zero-byte ``.../`` objects (the folder markers some consoles create) name no file and are left out.
    """
    listed = [obj for obj in store.list_versions(key) if not obj.key.endswith("/")]
    if key and not key.endswith("/"):
        exact = [obj for obj in listed if obj.key == key]
        if exact:
            name = key.rsplit("/", 1)[-1]
            return RemoteTree(exact, key[: len(key) - len(name)], name)
    prefix = key if not key or key.endswith("/") else key + "/"
    under = [obj for obj in listed if obj.key.startswith(prefix)]
    return RemoteTree(under, prefix, ".") if under else None


def mirror(
    store: ArtifactStore,
    tree: RemoteTree,
    root: Path,
    concurrency: int,
    on_file: Callable[[], None] | None = None,
) -> Path:
    """Bring the copy under ``root`` in step with ``tree`` and return the result's local path.

    The caller holds a lock on ``root``: one process at a time updates a copy. ``on_file`` is called before
    each object is fetched; what it raises abandons the update (the previous copy stays).
    """
    version = tree.version()
    current = _read_pointer(root)
    if current is not None and current[0] == version and (root / version).is_dir():
        return root / version / current[1]
    target = root / version
    manifest = root / f"{version}{_MANIFEST_SUFFIX}"
    if target.is_dir() and manifest.is_file():  # the bucket went back to a version kept here: complete already
        _write_atomically(root / POINTER, json.dumps({"version": version, "path": tree.path}))
        return target / tree.path
    if target.exists():  # an update that did not finish
        shutil.rmtree(target)
    target.mkdir(parents=True)
    previous_dir = root / current[0] if current is not None else None
    previous = _read_manifest(root / f"{current[0]}{_MANIFEST_SUFFIX}") if current is not None else {}
    downloads: list[tuple[str, Path]] = []
    reused = 0
    for obj in tree.objects:
        relative = tree.relative(obj)
        dest = target / relative
        unchanged = previous_dir is not None and previous.get(relative) == (obj.tag, obj.size)
        if unchanged and previous_dir is not None and _link(previous_dir / relative, dest):
            reused += 1
            continue
        downloads.append((obj.key, dest))
    try:
        fetch_all(store, downloads, concurrency, on_file)
        _write_manifest(root / f"{version}{_MANIFEST_SUFFIX}", tree)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    _write_atomically(root / POINTER, json.dumps({"version": version, "path": tree.path}))
    _prune(root, keep={version, current[0] if current is not None else version})
    _logger.info(
        "local copy %s: %d objects fetched, %d unchanged kept from the previous copy", target, len(downloads), reused
    )
    return target / tree.path


def fetch_all(
    store: ArtifactStore,
    targets: Iterable[tuple[str, Path]],
    concurrency: int,
    on_file: Callable[[], None] | None = None,
) -> None:
    """Download every ``(key, path)`` with up to ``concurrency`` requests in flight.

    One at a time, a dataset of small objects is bound by round trips (an ImageNet-size prefix, 1.28 M
    objects, would take hours); the objects are independent, so they are fetched side by side. At most a
    few times ``concurrency`` are queued, whatever the number of objects; the first failure cancels the
    rest and is raised, as is whatever ``on_file`` (called before each download starts) raises.
    """
    if concurrency <= 1:
        for key, path in targets:
            if on_file is not None:
                on_file()
            store.get_file(key, path)
        return
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="gkd-s3-fetch")
    pending: set[Future[Any]] = set()
    try:
        for key, path in targets:
            if on_file is not None:
                on_file()
            pending.add(pool.submit(store.get_file, key, path))
            if len(pending) >= 4 * concurrency:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
        for future in as_completed(pending):
            future.result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _link(source: Path, dest: Path) -> bool:
    """Put the previous version's file at ``dest`` without copying its bytes; False when it is gone."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, dest)
    except FileNotFoundError:
        return False
    except OSError:  # a file system without hard links
        shutil.copy2(source, dest)
    return True


def _read_pointer(root: Path) -> tuple[str, str] | None:
    try:
        pointer = json.loads((root / POINTER).read_text())
        return str(pointer["version"]), str(pointer["path"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _read_manifest(path: Path) -> dict[str, tuple[str, int]]:
    """``relative key -> (tag, size)``; empty when there is no readable manifest (everything is fetched)."""
    manifest: dict[str, tuple[str, int]] = {}
    try:
        with path.open(encoding="utf-8") as lines:
            for line in lines:
                tag, size, relative = line.rstrip("\n").split("\t", 2)
                manifest[relative] = (tag, int(size))
    except (OSError, ValueError):
        return {}
    return manifest


def _write_manifest(path: Path, tree: RemoteTree) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as out:
        for obj in tree.objects:
            out.write(f"{obj.tag}\t{obj.size}\t{tree.relative(obj)}\n")
    os.replace(tmp, path)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _prune(root: Path, keep: set[str]) -> None:
    """Remove every version but ``keep`` (the new one and the one a running job may still read)."""
    for child in root.iterdir():
        name = child.name.removesuffix(_MANIFEST_SUFFIX)
        if child.name == POINTER or name in keep:
            continue
        if child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)

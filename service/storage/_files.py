"""Local-file helpers both stores share: sha256 in one streaming pass, and atomic staged writes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

MIB = 1024 * 1024
CHUNK = 1 * MIB


def sha256_file(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def copy_hashing(src: IO[bytes], dst: IO[bytes]) -> tuple[int, str]:
    """Copy a stream while hashing it, so a local write costs a single pass."""
    digest = hashlib.sha256()
    size = 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


@contextlib.contextmanager
def staged(dest: Path, staging_dir: Path | None = None) -> Iterator[Path]:
    """Yield a temporary path; on success move it onto ``dest`` atomically, else remove it."""
    staging_dir = staging_dir or dest.parent
    staging_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name[:40]}.", suffix=".partial", dir=staging_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)

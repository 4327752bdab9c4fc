"""Where each attempt's training log is stored, and how much of it: one helper for the worker that writes
it and the API that serves it."""

from __future__ import annotations

import re
from pathlib import Path

LOG_MAX_BYTES = 8 * 2**20  # the end of a long run's output: where its failure is
_LOG_NAME = re.compile(r"^attempt-(\d+)\.log$")


def log_prefix(job_id: str) -> str:
    return f"jobs/{job_id}/logs/"


def log_key(job_id: str, attempt: int) -> str:
    """``jobs/<id>/logs/attempt-<n>.log`` (deleted with the job's other objects)."""
    return f"{log_prefix(job_id)}attempt-{attempt}.log"


def attempt_of(key: str) -> int | None:
    """The attempt a stored log belongs to, or None for another object under the prefix."""
    match = _LOG_NAME.match(key.rsplit("/", 1)[-1])
    return int(match.group(1)) if match else None


def read_tail(path: Path, max_bytes: int) -> bytes:
    """The last ``max_bytes`` of a file (all of it when smaller), starting at a line boundary."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size <= max_bytes:
            return handle.read()
        handle.seek(size - max_bytes)
        data = handle.read()
    cut = data.find(b"\n")
    return data[cut + 1 :] if 0 <= cut < len(data) - 1 else data


def tail_lines(text: str, lines: int | None) -> str:
    """The last ``lines`` lines of ``text`` (all with None)."""
    if lines is None:
        return text
    kept = text.splitlines(keepends=True)[-lines:] if lines > 0 else []
    return "".join(kept)

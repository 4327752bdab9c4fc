"""The niceness of a process's autogroup (``/proc/<pid>/autogroup``), where the kernel has one for it.

With autogroup scheduling every session is a group with an equal share of the CPU whatever its
processes' niceness, so lowering a process's priority only counts if its group follows. The file is
absent without kernel support, and reads empty for a process whose CPU scheduling a cgroup owns (as
in many containers): both mean there is no group niceness to read or set.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path

PROC = Path("/proc")
RATE_LIMIT_S = 0.11  # the kernel's one write per HZ/10 for callers without CAP_SYS_ADMIN, and a margin


def group_file(pid: int | str, proc: Path = PROC) -> Path:
    """The autogroup file of ``pid`` (a number, or ``"self"``)."""
    return proc / str(pid) / "autogroup"


def group_nice(pid: int | str, proc: Path = PROC) -> int | None:
    """The group's niceness, parsed from ``/autogroup-N nice K``; None where there is no group."""
    try:
        words = group_file(pid, proc).read_text().split()
    except OSError:
        return None
    if len(words) != 3 or words[1] != "nice":
        return None
    try:
        return int(words[2])
    except ValueError:
        return None


def set_group_nice(pid: int | str, nice: int, proc: Path = PROC, *, retries: int = 2) -> bool:
    """Give ``pid``'s group niceness ``nice``; False where it has no group or the kernel refused.

    Without CAP_SYS_ADMIN the kernel takes one such write per 100 ms on the whole host and answers EAGAIN
    to the rest (two jobs starting together, another container), so that answer is tried again.
    """
    if group_nice(pid, proc) is None:
        return False
    for attempt in range(retries + 1):
        try:
            group_file(pid, proc).write_text(str(nice))
        except OSError as exc:
            if exc.errno != errno.EAGAIN or attempt == retries:
                return False
            time.sleep(RATE_LIMIT_S)
        else:
            return True
    return False

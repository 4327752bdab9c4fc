"""The launcher's process handling: training processes start at a lower priority (GKD_RANK_NICE)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from worker.launcher import lower_priority
from worker.sched_group import group_nice, set_group_nice


def test_lower_priority_adds_to_the_niceness_and_caps_it() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        base = os.getpriority(os.PRIO_PROCESS, child.pid)
        lower_priority(child.pid, 5)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, base + 5)
        if group_nice(child.pid) is not None:  # the session's scheduling group follows, or the niceness would not count
            assert group_nice(child.pid) == min(19, base + 5)
        lower_priority(child.pid, 40)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 19
    finally:
        child.kill()
        child.wait()
    lower_priority(child.pid, 5)  # gone by now: nothing to do, no error


def test_a_process_without_a_scheduling_group_reads_none_and_is_left_alone(tmp_path: Path) -> None:
    """Without kernel support the file is absent; where a cgroup owns the process's scheduling it reads empty
    (as on the CI machines): neither is a group to read or set, and neither is an error."""
    (tmp_path / "7").mkdir()
    assert group_nice(7, tmp_path) is None and not set_group_nice(7, 5, tmp_path)  # absent
    (tmp_path / "7" / "autogroup").write_text("")
    assert group_nice(7, tmp_path) is None and not set_group_nice(7, 5, tmp_path)  # empty
    assert (tmp_path / "7" / "autogroup").read_text() == ""
    (tmp_path / "7" / "autogroup").write_text("/autogroup-85 nice 3\n")
    assert group_nice(7, tmp_path) == 3
    assert set_group_nice(7, 9, tmp_path) and (tmp_path / "7" / "autogroup").read_text() == "9"


def test_a_rate_limited_group_write_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel answers EAGAIN to a second write within 100 ms on the host (without CAP_SYS_ADMIN)."""
    (tmp_path / "7").mkdir()
    target = tmp_path / "7" / "autogroup"
    target.write_text("/autogroup-85 nice 0\n")
    refusals = {"left": 1}
    original = Path.write_text

    def rate_limited(self: Path, data: str, *args: Any, **kwargs: Any) -> int:
        if self == target and refusals["left"] > 0:
            refusals["left"] -= 1
            raise OSError(errno.EAGAIN, "Resource temporarily unavailable")
        return original(self, data, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", rate_limited)
    assert set_group_nice(7, 5, tmp_path) and target.read_text() == "5"
    refusals["left"] = 5
    assert not set_group_nice(7, 6, tmp_path, retries=2) and target.read_text() == "5"  # gives up in the end

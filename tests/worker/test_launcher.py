"""The launcher's process handling: training processes start at a lower priority (GKD_RANK_NICE)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from worker.launcher import lower_priority


def test_lower_priority_adds_to_the_niceness_and_caps_it() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], start_new_session=True)
    try:
        base = os.getpriority(os.PRIO_PROCESS, child.pid)
        lower_priority(child.pid, 5)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == min(19, base + 5)
        group = Path(f"/proc/{child.pid}/autogroup")
        if group.exists():  # the session's scheduling group follows, or the niceness would not count
            assert group.read_text().split()[-1] == str(min(19, base + 5))
        lower_priority(child.pid, 40)
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == 19
    finally:
        child.kill()
        child.wait()
    lower_priority(child.pid, 5)  # gone by now: nothing to do, no error

"""torchrun, tied to the Celery task that started it.

``python -m worker.torchrun_agent --parent-pid PID --nproc N CONTROL_DIR`` runs torchrun's own
``main`` (``--standalone --nproc-per-node N --max-restarts 0``) in this process, so torchrun's agent
gets a parent-death signal: when the task's process dies, the agent dies, and each rank (which
sets its own parent-death signal on the agent) dies with it. A rank that fails ends the whole
group (no in-place restarts): the task then requeues the job and the next attempt resumes from the
last stored checkpoint, possibly on another host.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path


def torchrun_args(nproc: int, control_dir: Path, agent_pid: int) -> list[str]:
    """The torchrun command line (after ``torchrun``) that starts ``nproc`` ranks of ``worker.rank_main``."""
    return [
        "--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
        "-m", "worker.rank_main", str(control_dir), "--parent-pid", str(agent_pid),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("control_dir", type=Path)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--nproc", type=int, required=True)
    args = parser.parse_args(argv)

    from worker import shutdown

    shutdown.die_with_parent(signal.SIGKILL)
    if os.getppid() != args.parent_pid:
        return 1
    from torch.distributed.run import main as torchrun

    torchrun(torchrun_args(args.nproc, args.control_dir, os.getpid()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

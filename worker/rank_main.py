"""One training rank of a job: ``python -m worker.rank_main CONTROL_DIR --parent-pid PID``.

The job's Celery task starts it directly for a one-rank job and through torchrun
(``worker/torchrun_agent.py``) for several. A rank never touches the database or the artifact store
and holds no credentials: it reads ``launch.json`` from the control folder, joins the process group
that torchrun describes (NCCL with one GPU per local rank, or gloo on CPU), runs the experiment,
and talks back through files (``worker/reports.py``): rank 0 reports, every rank polls the stop
file, and each writes its outcome. The CUDA context lives here, never in the Celery processes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)


def metrics_summary(result: Any) -> dict[str, Any]:
    """The JSON summary shown on GET /v1/jobs/{id}: per-domain mIoU of the student and each reference.

    ``deployed`` holds each shipped file's ("onnx", "int8") per-domain metrics; each student domain row
    also carries their parity with PyTorch (worker.parity).
    """
    from worker.parity import fold_parity

    def table(per_domain: dict[str, Any]) -> dict[str, Any]:
        return {domain: m.to_dict() for domain, m in per_domain.items()}

    student = table(result.student)
    deployed = {kind: table(rows) for kind, rows in result.deployed.items()}
    fold_parity(student, deployed)
    return {
        "student": student,
        "references": {name: table(rows) for name, rows in result.references.items()},
        # Mean mIoU per model over all targets and each benchmark group (e.g. the paper's "GTAV avg").
        "averages": result.averages,
        "deployed": deployed,
        # The robustness report (report.json): the teacher-lead fraction and CKA to the teacher per domain.
        "report": result.report,
    }


def build_config(launch: dict[str, Any], device: str) -> Any:
    """The ExperimentConfig the task resolved, rebuilt from the launch file for this rank's device."""
    from service.schemas import JobSpec
    from worker.reports import decode_split, split_key
    from worker.spec_convert import to_experiment_config

    splits = {key: decode_split(value) for key, value in launch["datasets"].items()}
    weights: dict[str, str] = launch["weights"]
    source_eval = launch.get("source_eval")
    return to_experiment_config(
        JobSpec.model_validate(launch["spec"]),
        dataset_ref=lambda ref: splits[split_key(ref)],
        resolve_weights=weights.__getitem__,
        device=device,
        source_eval=decode_split(source_eval) if source_eval else None,
        prepared_dir=Path(launch["prepared_dir"]) if launch.get("prepared_dir") else None,
        speed_overrides=launch.get("speed") or {},
    )


def _run(control: Any, launch: dict[str, Any]) -> dict[str, Any]:
    """Join the group, run the experiment, return this rank's outcome (errors propagate, group still up)."""
    import torch

    from gkd_core.engine import distributed
    from gkd_core.experiment import run_experiment
    from worker.reports import ReportingCallbacks, StopFileCallbacks

    kind = launch["device"]
    # torchrun's contract (absent for a one-rank job started directly).
    local_rank, world = int(os.environ.get("LOCAL_RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        device = distributed.setup(device_kind=kind, local_rank=local_rank)
    elif kind == "cuda":
        torch.cuda.set_device(0)
        device = torch.device("cuda", 0)
    else:
        device = torch.device("cpu")
    rank = distributed.rank()
    callbacks = ReportingCallbacks(control) if rank == 0 else StopFileCallbacks(control)
    try:
        if rank == 0 and world > 1:
            callbacks.on_event(
                f"{world} ranks joined ({distributed.backend_for(kind)} on {kind}); "
                f"each takes 1/{world} of every global batch"
            )
        if rank == 0 and os.nice(0):  # GKD_RANK_NICE, as the process actually runs it
            callbacks.on_event(f"training processes run at niceness {os.nice(0)}: the worker and the API come first")
        config = build_config(launch, str(device))
        result = run_experiment(config, work_dir=Path(launch["work_dir"]), callbacks=callbacks)
        if rank != 0:
            return {"status": "ok"}
        return {
            "status": "ok",
            "summary": metrics_summary(result),
            "exports": {name: str(path) for name, path in result.exports.items()},
        }
    finally:
        if isinstance(callbacks, ReportingCallbacks):
            callbacks.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("control_dir", type=Path)
    parser.add_argument("--parent-pid", type=int, required=True, help="exit at once when this process is gone")
    args = parser.parse_args(argv)

    from worker import shutdown

    # Die with the process that started us (the task, or torchrun's agent); it may already be gone.
    shutdown.die_with_parent(signal.SIGKILL)
    if os.getppid() != args.parent_pid:
        return 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rank %(process)d %(name)s: %(message)s")

    import gkd_core  # noqa: F401  (the torchvision shim, before anything imports timm)
    from gkd_core.engine import distributed
    from gkd_core.engine.trainer import StopRequested
    from worker.reports import ControlDir
    from worker.retry import USER_ERRORS

    control = ControlDir(args.control_dir)
    rank = int(os.environ.get("RANK", "0"))
    try:
        outcome = _run(control, control.read_launch())
    except StopRequested as exc:
        outcome = {"status": "stopped", "message": str(exc)}
    except BaseException as exc:
        # Say why first, then exit without leaving the group: peers may be stuck in a collective, and
        # torchrun's agent ends them once this process is gone.
        _logger.exception("rank %d failed", rank)
        control.write_outcome(rank, {"status": "error", "type": type(exc).__name__, "message": str(exc),
                                     "user": isinstance(exc, USER_ERRORS)})  # fmt: skip
        return 1
    control.write_outcome(rank, outcome)
    distributed.teardown()
    return 0


if __name__ == "__main__":
    from gkd_core.engine.distributed import exit_rank

    exit_rank(main())  # the outcome file is written: skip interpreter finalization (see exit_rank)

"""Remove the local folders of jobs and evaluations that no attempt will use again.

An attempt that ends well removes its work folder (checkpoints, TensorBoard files, the ranks' log) and its
control folder, but a failure, a cancel, a handoff to another worker or a killed worker leaves them under
``data_dir/work``: several gigabytes of checkpoints per job on a GPU host, until the disk is full. Every
checkpoint that matters is in storage already (a new attempt pulls it), so a folder can go once its job or
evaluation is not running anywhere. A folder touched within ``idle_s`` stays: an attempt that has just
claimed its job creates it afresh, and must not lose it to a sweep that read the job as queued a moment
before.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from service.models import Evaluation, Job, JobStatus
from worker.context import WorkerContext

_logger = logging.getLogger(__name__)

_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_JOB_FOLDER = re.compile(rf"^(?P<id>{_ID})(?:\.control)?$")  # worker/pipeline.py: <id>, <id>.control
_EVALUATION_FOLDER = re.compile(rf"^eval-(?P<id>{_ID})$")  # worker/evaluation.py: eval-<id>
_ACTIVE = (JobStatus.RUNNING.value, JobStatus.CANCELLING.value)  # evaluations share these states
_TRASH = ".trash-"  # a folder moved aside to be deleted


@dataclass
class Cleaned:
    """What one pass removed and how many bytes that freed."""

    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0


def clean_scratch(context: WorkerContext, *, idle_s: float, now: float | None = None) -> Cleaned:
    """Remove each folder of ``context.scratch`` whose job or evaluation is not running (or no longer
    exists) and that nothing touched for ``idle_s`` seconds; anything else in the folder is left alone."""
    now = time.time() if now is None else now
    jobs: dict[str, list[Path]] = {}
    evaluations: dict[str, list[Path]] = {}
    for path in context.scratch.iterdir():
        if not path.is_dir() or path.is_symlink():
            continue
        if path.name.startswith(_TRASH):  # a removal of ours that was cut short
            shutil.rmtree(path, ignore_errors=True)
            continue
        if match := _JOB_FOLDER.match(path.name):
            jobs.setdefault(match["id"], []).append(path)
        elif match := _EVALUATION_FOLDER.match(path.name):
            evaluations.setdefault(match["id"], []).append(path)
    with context.session() as session:
        running = set(session.scalars(select(Job.id).where(Job.id.in_(list(jobs)), Job.status.in_(_ACTIVE))))
        active_evaluations = select(Evaluation.id).where(
            Evaluation.id.in_(list(evaluations)), Evaluation.status.in_(_ACTIVE)
        )
        running |= set(session.scalars(active_evaluations))
    cleaned = Cleaned()
    for row_id, paths in (*jobs.items(), *evaluations.items()):
        if row_id in running:
            continue
        for path in paths:
            try:
                if now - path.stat().st_mtime < idle_s:
                    continue
            except FileNotFoundError:  # removed meanwhile (its own attempt ended)
                continue
            # Claimed here since the statuses were read? Its attempt would be recreating this folder: ask
            # again right before moving the folder out of the way (a rename is atomic; prepare() then makes
            # a fresh one), and delete it only under its new name.
            if _is_running(context, row_id):
                continue
            trash = path.with_name(f"{_TRASH}{path.name}-{uuid.uuid4().hex[:8]}")
            try:
                path.rename(trash)
            except FileNotFoundError:
                continue
            size = _size(trash)
            shutil.rmtree(trash, ignore_errors=True)
            cleaned.removed.append(path.name)
            cleaned.freed_bytes += size
    if cleaned.removed:
        _logger.info(
            "scratch: removed %d folders of jobs and evaluations no longer running (%.1f MiB): %s",
            len(cleaned.removed), cleaned.freed_bytes / 2**20, ", ".join(sorted(cleaned.removed)),
        )  # fmt: skip
    return cleaned


def _is_running(context: WorkerContext, row_id: str) -> bool:
    with context.session() as session:
        job = session.scalar(select(Job.status).where(Job.id == row_id))
        status = job if job is not None else session.scalar(select(Evaluation.status).where(Evaluation.id == row_id))
    return status in _ACTIVE


def _size(path: Path) -> int:
    total = 0
    for item in path.rglob("*"):
        try:
            if item.is_file() and not item.is_symlink():
                total += item.stat().st_size
        except FileNotFoundError:
            continue
    return total

"""TensorBoard scalars from a run's metric rows, written by tensorboardX.

Every ``MetricRow`` the trainer reports becomes one scalar with tag ``"<stage>/<name>"`` (``stage1/loss``,
``stage2/loss_ce``) at global step ``row.step``. Steps restart with each stage, so each stage gets its own
writer in ``log_dir/<stage>/`` (a TensorBoard "run"); ``tensorboard --logdir LOG_DIR`` shows them all.

Resuming: a stage's writer is opened at that stage's first row with ``purge_step`` set to the row's
step, so after a resume TensorBoard hides whatever an interrupted attempt logged past the checkpoint
and only the rows of the resumed run remain.

tensorboardX (the ``worker`` extra) is imported when a ``TensorBoardCallbacks`` is built, never when
gkd_core is imported, so the library works without it.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from gkd_core.engine.callbacks import Callbacks, MetricRow, Phase
from gkd_core.errors import ConfigError

_logger = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def _summary_writer() -> Any:
    try:
        from tensorboardX import SummaryWriter
    except ImportError as exc:  # pragma: no cover - exercised by the "without tensorboardX" test in a subprocess
        raise ConfigError(
            "TensorBoardCallbacks writes through tensorboardX, which is not installed: "
            "pip install 'gkd-distill[worker]' (or pip install tensorboardX)"
        ) from exc
    return SummaryWriter


class TensorBoardCallbacks(Callbacks):
    """Write every metric row as a TensorBoard scalar: tag ``stage/name``, global step = the row's step.

    Args:
        log_dir: folder for the event files; each stage writes into ``log_dir/<stage>/``.
        flush_secs: the writers flush at least this often (they also flush at each checkpoint and phase).

    Raises:
        ConfigError: tensorboardX is not installed.
    """

    def __init__(self, log_dir: str | Path, *, flush_secs: int = 30) -> None:
        self._writer_class = _summary_writer()
        self.log_dir = Path(log_dir)
        self.flush_secs = flush_secs
        self._writers: dict[str, Any] = {}

    def _writer(self, stage: str, first_step: int) -> Any:
        writer = self._writers.get(stage)
        if writer is None:
            folder = self.log_dir / (_UNSAFE.sub("_", stage) or "run")
            folder.mkdir(parents=True, exist_ok=True)
            # tensorboardX names files by the second; a nanosecond suffix keeps a writer opened in the same
            # second (a quick resume) from truncating the previous file, and keeps files in creation order.
            writer = self._writer_class(
                logdir=str(folder),
                purge_step=first_step,
                flush_secs=self.flush_secs,
                filename_suffix=f".{time.time_ns()}",
            )
            self._writers[stage] = writer
        return writer

    def on_metrics(self, rows: list[MetricRow]) -> None:
        for row in rows:
            writer = self._writer(row.stage, row.step)
            writer.add_scalar(f"{row.stage}/{row.name}", float(row.value), global_step=int(row.step))

    def on_checkpoint(self, path: Path, stage: str, step: int) -> None:
        # A checkpoint is where a resumed run starts again: the curves up to it should be on disk too.
        self.flush()

    def on_phase(self, phase: Phase) -> None:
        self.flush()

    def flush(self) -> None:
        """Write buffered scalars to the event files."""
        for writer in self._writers.values():
            writer.flush()

    def close(self) -> None:
        """Flush and close every writer (a later row opens a new event file)."""
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()

    def __enter__(self) -> TensorBoardCallbacks:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

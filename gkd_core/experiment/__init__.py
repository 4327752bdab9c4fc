"""One distillation experiment end to end: the method's stages, references, evaluation, export.

This is what the service's worker calls (``run_experiment``). The runner walks the phases
(:class:`~gkd_core.engine.callbacks.Phase`) and announces each through ``callbacks.on_phase``; what
happens inside stage 1 and stage 2 is up to the method (gkd_core.methods), found by name in the
registry. A resumed attempt picks up mid-stage and never reruns a finished stage (see ``run.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gkd_core.deployed import OnnxSegmenter
from gkd_core.engine.callbacks import Callbacks, Phase
from gkd_core.engine.metrics import SegMetrics
from gkd_core.engine.seeding import seed_everything
from gkd_core.experiment.config import REFERENCES, DatasetSplit, ExperimentConfig
from gkd_core.experiment.deployed_eval import SHIPPED_FILES
from gkd_core.experiment.run import ExperimentRun, evaluate_split
from gkd_core.export import load_student, read_export_meta
from gkd_core.stages.stage2 import SegmentationModel, Stage2Config

_logger = logging.getLogger(__name__)

__all__ = [
    "REFERENCES",
    "SHIPPED_FILES",
    "DatasetSplit",
    "ExperimentConfig",
    "ExperimentResult",
    "Stage2Config",
    "evaluate_shipped",
    "evaluate_student",
    "run_experiment",
]


@dataclass
class ExperimentResult:
    """Per-domain metrics of the student and of each reference, and the exported files."""

    student: dict[str, SegMetrics]
    references: dict[str, dict[str, SegMetrics]]
    exports: dict[str, Path]
    # Mean mIoU per model ("student" and each reference) over all targets and each benchmark group.
    averages: dict[str, dict[str, float]] = field(default_factory=dict)
    # The deployable files scored like the student: "onnx" (and "int8" when asked) -> domain -> metrics.
    deployed: dict[str, dict[str, SegMetrics]] = field(default_factory=dict)
    # report.json's content: every row, the fraction of the teacher's lead carried, CKA to the teacher.
    report: dict[str, Any] = field(default_factory=dict)


def run_experiment(cfg: ExperimentConfig, *, work_dir: Path, callbacks: Callbacks | None = None) -> ExperimentResult:
    """Run (or resume) one experiment in ``work_dir``; see the module docstring for the phases.

    Raises:
        StopRequested: ``callbacks.should_stop()`` asked to stop (checkpoints were saved first).
        ConfigError, DatasetError, CheckpointError: bad configuration, data or saved state.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    cb = callbacks or Callbacks()
    seed_everything(cfg.seed)
    run = ExperimentRun(cfg, work_dir, cb)
    method = run.method
    cb.on_event(f"experiment {cfg.name}: method {cfg.method}, {run.num_classes} classes, work dir {work_dir}")

    distilled: nn.Module | None = None
    if method.traits.two_stage:
        run.begin(Phase.STAGE1)
        distilled = method.distil(run)
        run.end(Phase.STAGE1)
    run.begin(Phase.STAGE2)
    student = method.train_student(run, distilled)
    run.end(Phase.STAGE2)

    models: dict[str, SegmentationModel] = {"student": student}
    if cfg.references:
        run.begin(Phase.REFERENCES)
        for name in cfg.references:
            models[name] = run.reference(name)
        run.end(Phase.REFERENCES)

    run.begin(Phase.EVALUATING)
    results = run.evaluate(models)
    similarity = run.similarity(models)
    run.end(Phase.EVALUATING)

    run.begin(Phase.EXPORTING)
    exported = run.export(student, results, similarity)
    cb.on_progress(Phase.EXPORTING.value, 1.0, 0.0)
    cb.on_event("experiment finished")
    return ExperimentResult(
        student=results["student"],
        references={k: v for k, v in results.items() if k != "student"},
        exports=exported.files,
        averages={name: run.averages(per) for name, per in results.items()},
        deployed=exported.deployed,
        report=exported.report,
    )


def evaluate_student(
    path: Path,
    targets: Sequence[DatasetSplit],
    *,
    device: str | torch.device = "cpu",
    window: int | None = None,
    stride: int | None = None,
) -> dict[str, SegMetrics]:
    """Evaluate an exported student (a ``.safetensors`` file or an export folder) on more domains."""
    path = Path(path)
    if path.is_dir():
        path = path / "student.safetensors"
    model, meta = load_student(path, device=device)
    s2 = _protocol(window or meta.image_size, stride)
    dev = torch.device(device)
    return {ref.label: evaluate_split(model, ref, meta.num_classes, s2, dev) for ref in targets}


def evaluate_shipped(
    student: Path,
    files: Mapping[str, Path],
    targets: Sequence[DatasetSplit],
    *,
    device: str | torch.device = "cpu",
    stride: int | None = None,
) -> dict[str, dict[str, SegMetrics]]:
    """Score a job's deployable files (kind -> ``.onnx``, run by onnxruntime) on more domains, with the
    sliding-window protocol ``evaluate_student`` gives the PyTorch ``student`` file they were exported
    from: what ships can drift on a domain the job never saw, so it is measured there too.

    The ONNX models take the export's window only, so the window is the student's, never a choice.
    """
    meta = read_export_meta(student)
    s2 = _protocol(meta.image_size, stride)
    dev = torch.device(device)
    results: dict[str, dict[str, SegMetrics]] = {}
    for kind, file in files.items():
        model = OnnxSegmenter(file, device=dev)
        results[kind] = {ref.label: evaluate_split(model, ref, meta.num_classes, s2, dev) for ref in targets}
    return results


def _protocol(window: int, stride: int | None) -> Stage2Config:
    """The evaluation settings of a follow-up evaluation: sliding windows of ``window`` pixels."""
    return Stage2Config(steps=1, crop_size=max(32, window), eval_window=window, eval_stride=stride)

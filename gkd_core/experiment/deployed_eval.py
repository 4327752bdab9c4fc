"""Score what a job ships: the exported ONNX student (and its INT8 version) on every evaluated domain.

Runs inside the exporting phase, after the files are written, with the same sliding-window protocol
and domains as the PyTorch evaluation, so each domain's row can show the deployed model's mIoU next to
PyTorch's (see :mod:`gkd_core.deployed` for why this is measured rather than assumed).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gkd_core.deployed import OnnxSegmenter, calibration_windows, quantize_int8
from gkd_core.engine.callbacks import Phase
from gkd_core.engine.metrics import SegMetrics
from gkd_core.export import ONNX_FILE

if TYPE_CHECKING:
    from gkd_core.experiment.run import ExperimentRun

INT8_FILE = "student.int8.onnx"
SHIPPED_FILES = {"onnx": ONNX_FILE, "int8": INT8_FILE}
"""Each deployable kind's file name, as a job's export writes it: what a follow-up evaluation looks for."""


@contextmanager
def _quiet_quantizer() -> Iterator[None]:
    """onnxruntime's quantizer logs a warning per 1-D weight it cannot quantize per channel, on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        root.setLevel(level)


def deployed_models(run: ExperimentRun, exports: dict[str, Path]) -> dict[str, Path]:
    """The deployable files to score: "onnx" when it was exported, and "int8" (quantized here) if asked."""
    if "onnx" not in exports:
        return {}
    files = {"onnx": exports["onnx"]}
    if run.cfg.export_int8:
        windows = calibration_windows(
            run.cfg.source.open(), run.cfg.stage2.crop_size, run.cfg.int8_calibration_images, seed=run.cfg.seed
        )
        run.cb.on_event(f"exporting: INT8 static quantization calibrated on {len(windows)} source windows")
        with _quiet_quantizer():
            files["int8"] = quantize_int8(exports["onnx"], exports["onnx"].with_name(INT8_FILE), windows)
    return files


def evaluate_deployed(
    run: ExperimentRun, files: dict[str, Path], torch_results: dict[str, SegMetrics]
) -> dict[str, dict[str, SegMetrics]]:
    """Per-domain metrics of each deployable file, with a progress report and one event per domain."""
    from gkd_core.experiment.run import evaluate_split

    domains = run.domains()
    total = len(files) * len(domains)
    results: dict[str, dict[str, SegMetrics]] = {}
    for kind, path in files.items():
        model = OnnxSegmenter(path, device=run.device)
        results[kind] = {}
        for ref in domains:
            metrics = evaluate_split(model, ref, run.num_classes, run.stage2, run.device)
            results[kind][ref.label] = metrics
            run.cb.on_progress(Phase.EXPORTING.value, sum(map(len, results.values())) / total, None)
            reference = torch_results.get(ref.label)
            versus = (
                ""
                if reference is None
                else (f" (PyTorch {reference.miou:.4f}, {(metrics.miou - reference.miou) * 100:+.2f} points)")
            )
            run.cb.on_event(f"exporting: {kind} on {ref.label}: mIoU {metrics.miou:.4f}{versus}")
    return results

"""The artifacts a team deploys, evaluated as deployed: ONNX through onnxruntime, and an INT8 version.

A student that scores well in PyTorch can lose accuracy on the way to production: an exporter
mistranslating an operator, or INT8 quantization whose calibration on source images clips the
activations of other domains. The only way to know is to score the exported files themselves on
every domain, with the same sliding-window protocol as the PyTorch model, which is what this module
lets :mod:`gkd_core.experiment` do.

Quantization is onnxruntime's static quantization (``quantize_static``: QDQ format, INT8 weights
per channel, UINT8 activations, MinMax calibration) fed with windows of source-domain images: the
maintained implementation that deployment runtimes read, not a hand-written one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gkd_core.errors import CheckpointError, ConfigError

_logger = logging.getLogger(__name__)

INPUT_NAME = "images"


class OnnxSegmenter(nn.Module):
    """An exported ``.onnx`` student behind the ``nn.Module`` call the evaluators use.

    Inputs are moved to the host and run by onnxruntime's CPU provider (or CUDA's when the installed
    onnxruntime has it and ``device`` is CUDA); logits come back as a float32 tensor on the input's device.
    The model has a fixed spatial size (the export's window) and a dynamic batch axis.
    """

    def __init__(self, path: Path, *, device: str | torch.device = "cpu", threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise CheckpointError(f"ONNX model {self.path} does not exist")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if torch.device(device).type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise CheckpointError(f"{self.path} is not a loadable ONNX model: {exc}") from exc
        self.input_shape = list(self.session.get_inputs()[0].shape)

    @property
    def window(self) -> int | None:
        """The square input size the model was exported for (None if the export left it dynamic)."""
        height = self.input_shape[-1] if self.input_shape else None
        return height if isinstance(height, int) else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run(None, {INPUT_NAME: array})
        return torch.from_numpy(np.asarray(logits, dtype=np.float32)).to(images.device)


def calibration_windows(dataset: Any, window: int, count: int, *, seed: int = 0) -> list[np.ndarray]:
    """Up to ``count`` ``[1, 3, window, window]`` float32 crops of ``dataset``'s images (zero-padded if smaller).

    One crop per image, at a seeded random position, over the images in a seeded order: windows like
    those the sliding-window evaluator feeds the model.
    """
    if count < 1:
        raise ConfigError(f"INT8 calibration needs at least one image, got count={count}")
    total = len(dataset)
    if total == 0:
        raise ConfigError("INT8 calibration: the source split has no images")
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    for index in rng.permutation(total)[:count]:
        image = dataset[int(index)]["image"].to(torch.float32)
        _, height, width = image.shape
        top = int(rng.integers(0, max(1, height - window + 1)))
        left = int(rng.integers(0, max(1, width - window + 1)))
        crop = torch.zeros(3, window, window)
        piece = image[:, top : top + window, left : left + window]
        crop[:, : piece.shape[1], : piece.shape[2]] = piece
        crops.append(crop.unsqueeze(0).numpy())
    return crops


def quantize_int8(onnx_path: Path, out_path: Path, windows: Sequence[np.ndarray]) -> Path:
    """Statically quantize ``onnx_path`` to INT8 (QDQ) calibrated on ``windows``; returns ``out_path``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not windows:
        raise ConfigError("INT8 quantization needs calibration windows")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    prepared = out_path.with_name(out_path.stem + ".prep.onnx")
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        # Shape inference and graph clean-up first, as onnxruntime's quantization guide asks.
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(tmp),
            _reader(CalibrationDataReader, windows),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
        tmp.replace(out_path)
    finally:
        prepared.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    _logger.info("INT8 model (static, QDQ, %d calibration windows) written to %s", len(windows), out_path)
    return out_path


def _reader(base: type, windows: Sequence[np.ndarray]) -> Any:
    """A CalibrationDataReader (the class is onnxruntime's, imported lazily) over prepared windows."""

    class WindowReader(base):
        def __init__(self) -> None:
            self._windows: Iterator[np.ndarray] = iter(windows)

        def get_next(self) -> dict[str, np.ndarray] | None:
            window = next(self._windows, None)
            return None if window is None else {INPUT_NAME: window}

    return WindowReader()

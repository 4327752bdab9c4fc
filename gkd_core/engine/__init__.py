"""The generic training engine: fit loop, checkpoints, callbacks, optimizers, metrics, inference."""

from gkd_core.engine.batches import BatchSource, StepBatches
from gkd_core.engine.callbacks import (
    Callbacks,
    CompositeCallbacks,
    LoggingCallbacks,
    MetricRow,
    Phase,
    RecordingCallbacks,
)
from gkd_core.engine.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    load_module_state,
    read_model_state,
    save_checkpoint,
)
from gkd_core.engine.inference import predict_logits, sliding_window_logits, whole_image_logits
from gkd_core.engine.metrics import ConfusionMatrix, SegMetrics
from gkd_core.engine.optim import adamw_cosine, adamw_poly, param_groups, scaled_lr
from gkd_core.engine.seeding import deterministic_cpu, seed_everything
from gkd_core.engine.trainer import FitResult, NonFiniteLossError, StopRequested, fit

__all__ = [
    "BatchSource",
    "Callbacks",
    "CompositeCallbacks",
    "ConfusionMatrix",
    "FitResult",
    "LoggingCallbacks",
    "MetricRow",
    "NonFiniteLossError",
    "Phase",
    "RecordingCallbacks",
    "SegMetrics",
    "StepBatches",
    "StopRequested",
    "adamw_cosine",
    "adamw_poly",
    "deterministic_cpu",
    "fit",
    "latest_checkpoint",
    "load_checkpoint",
    "load_module_state",
    "param_groups",
    "predict_logits",
    "read_model_state",
    "save_checkpoint",
    "scaled_lr",
    "seed_everything",
    "sliding_window_logits",
    "whole_image_logits",
]

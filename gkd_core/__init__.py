"""gkd_core: Generalizable Knowledge Distillation (Lv et al., CVPR 2026) as a plain PyTorch library.

It knows nothing of HTTP, SQL, Celery or environment variables: typed configs and callbacks go
in, results come out, and everything runs in a notebook::

    from gkd_core import ExperimentConfig, BackboneConfig, DatasetSplit, run_experiment

The public names below load on first use (PEP 562), so ``import gkd_core`` stays cheap for
processes that only need, say, the dataset validator.
"""

from __future__ import annotations

import importlib
from typing import Any

from gkd_core import _compat  # noqa: F401  (must come first: makes torchvision/timm importable)

__version__ = "0.1.0"

_EXPORTS = {
    "gkd_core.config": ("BackboneConfig", "Stage1Config"),
    "gkd_core.errors": ("GKDError", "ConfigError", "CheckpointError", "DatasetError"),
    "gkd_core.models": ("Backbone", "TokenOutput", "Teacher", "build_backbone", "build_teacher",
                        "align_teacher_to_student"),
    "gkd_core.losses": ("QSDHead", "ProjectionHead"),
    "gkd_core.stages.stage1": ("Stage1Task", "Stage1Result", "run_stage1"),
    "gkd_core.models.heads": ("build_head",),
    "gkd_core.stages.stage2": ("Stage2Config",),
    "gkd_core.experiment": ("DatasetSplit", "ExperimentConfig", "ExperimentResult", "run_experiment",
                            "evaluate_student"),
    "gkd_core.export": ("load_student",),
    "gkd_core.methods": ("DistillMethod", "MethodTraits", "get_method", "list_methods", "register_method"),
    "gkd_core.engine": ("Callbacks", "CompositeCallbacks", "MetricRow", "Phase", "FitResult", "StopRequested", "fit",
                        "StepBatches", "ConfusionMatrix", "SegMetrics", "seed_everything"),
    "gkd_core.data": ("open_dataset", "validate_dataset", "generate_benchmark", "load_benchmark", "LAYOUTS"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gkd_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)

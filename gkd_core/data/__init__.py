"""Datasets for gkd_core: layout readers, validation, transforms, loaders and the synthetic benchmark.

Public API (see docs/DATASETS.md): ``open_dataset``, ``LAYOUTS`` (and the layout registry:
``get_layout``, ``list_layouts``, ``layout_catalogue``, ``register_layout``), ``validate_dataset``,
``SegTrainTransform``, ``SegEvalTransform``, ``Stage1Transform``, ``make_loader`` and
``generate_benchmark``.
"""

from __future__ import annotations

import importlib
from typing import Any

# Loaded on first use (PEP 562): the validator (numpy + PIL) must import without torch, because the
# API image validates datasets at registration and carries no torch.
_EXPORTS = {
    "gkd_core.data.cityscapes_labels": ("CITYSCAPES_CLASSES", "LABEL_ID_TO_TRAIN_ID", "label_ids_to_train_ids"),
    "gkd_core.data.dataset": ("PairIssue", "SegmentationDataset", "open_dataset"),
    "gkd_core.data.layouts": (
        "LAYOUTS",
        "ClassInfo",
        "Layout",
        "LayoutOption",
        "detect_layout",
        "get_layout",
        "layout_catalogue",
        "list_layouts",
        "list_splits",
        "read_classes_json",
        "register_layout",
    ),
    "gkd_core.data.loader": ("make_loader", "seed_worker"),
    "gkd_core.data.synthetic": (
        "TINY_SIZES",
        "BenchmarkInfo",
        "BenchmarkSizes",
        "DomainInfo",
        "generate_benchmark",
        "load_benchmark",
    ),
    "gkd_core.data.transforms": ("SegEvalTransform", "SegTrainTransform", "Stage1Transform", "photometric_distortion"),
    "gkd_core.data.validation": ("Problem", "SplitReport", "ValidationReport", "validate_dataset"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'gkd_core.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CITYSCAPES_CLASSES",
    "LABEL_ID_TO_TRAIN_ID",
    "LAYOUTS",
    "TINY_SIZES",
    "BenchmarkInfo",
    "BenchmarkSizes",
    "ClassInfo",
    "DomainInfo",
    "Layout",
    "LayoutOption",
    "PairIssue",
    "Problem",
    "SegEvalTransform",
    "SegTrainTransform",
    "SegmentationDataset",
    "SplitReport",
    "Stage1Transform",
    "ValidationReport",
    "detect_layout",
    "generate_benchmark",
    "get_layout",
    "label_ids_to_train_ids",
    "layout_catalogue",
    "list_layouts",
    "list_splits",
    "load_benchmark",
    "make_loader",
    "open_dataset",
    "photometric_distortion",
    "read_classes_json",
    "register_layout",
    "seed_worker",
    "validate_dataset",
]

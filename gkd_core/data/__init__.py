"""Datasets for gkd_core: layout readers, validation, transforms, loaders and the synthetic benchmark.

Public API (see docs/DATASETS.md): ``open_dataset``, ``LAYOUTS`` (and the layout registry:
``get_layout``, ``list_layouts``, ``layout_catalogue``, ``register_layout``), ``validate_dataset``,
``SegTrainTransform``, ``SegEvalTransform``, ``Stage1Transform``, ``make_loader`` (and its defaults:
``default_num_workers``, ``loader_options``), ``prepare`` (decode-once stores), the deferred photometric
distortion (``DeferredPhotometric``, ``apply_deferred``) and ``generate_benchmark``.
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
    "gkd_core.data.loader": ("default_num_workers", "loader_options", "make_loader", "seed_worker"),
    "gkd_core.data.synthetic": (
        "TINY_SIZES",
        "BenchmarkInfo",
        "BenchmarkSizes",
        "DomainInfo",
        "generate_benchmark",
        "load_benchmark",
    ),
    "gkd_core.data.photometric": ("DeferredPhotometric", "apply_deferred", "photometric_distortion"),
    "gkd_core.data.prepared": ("PreparedDataset", "prepare"),
    "gkd_core.data.transforms": ("SegEvalTransform", "SegTrainTransform", "Stage1Transform"),
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
    "DeferredPhotometric",
    "DomainInfo",
    "Layout",
    "LayoutOption",
    "PairIssue",
    "PreparedDataset",
    "Problem",
    "SegEvalTransform",
    "SegTrainTransform",
    "SegmentationDataset",
    "SplitReport",
    "Stage1Transform",
    "ValidationReport",
    "apply_deferred",
    "default_num_workers",
    "detect_layout",
    "generate_benchmark",
    "get_layout",
    "label_ids_to_train_ids",
    "layout_catalogue",
    "list_layouts",
    "list_splits",
    "load_benchmark",
    "loader_options",
    "make_loader",
    "open_dataset",
    "photometric_distortion",
    "prepare",
    "read_classes_json",
    "register_layout",
    "seed_worker",
    "validate_dataset",
]

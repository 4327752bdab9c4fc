"""Datasets for gkd_core: layout readers, validation, transforms, loaders and the synthetic benchmark.

Public API (see docs/DATASETS.md): ``open_dataset``, ``LAYOUTS``, ``validate_dataset``,
``SegTrainTransform``, ``SegEvalTransform``, ``Stage1Transform``, ``make_loader`` and
``generate_benchmark``.
"""

from __future__ import annotations

from gkd_core.data.cityscapes_labels import CITYSCAPES_CLASSES, LABEL_ID_TO_TRAIN_ID, label_ids_to_train_ids
from gkd_core.data.dataset import SegmentationDataset, open_dataset
from gkd_core.data.layouts import LAYOUTS, ClassInfo, detect_layout, list_splits, read_classes_json
from gkd_core.data.loader import make_loader, seed_worker
from gkd_core.data.synthetic import (
    TINY_SIZES,
    BenchmarkInfo,
    BenchmarkSizes,
    DomainInfo,
    generate_benchmark,
    load_benchmark,
)
from gkd_core.data.transforms import SegEvalTransform, SegTrainTransform, Stage1Transform, photometric_distortion
from gkd_core.data.validation import Problem, SplitReport, ValidationReport, validate_dataset

__all__ = [
    "CITYSCAPES_CLASSES",
    "LABEL_ID_TO_TRAIN_ID",
    "LAYOUTS",
    "TINY_SIZES",
    "BenchmarkInfo",
    "BenchmarkSizes",
    "ClassInfo",
    "DomainInfo",
    "Problem",
    "SegEvalTransform",
    "SegTrainTransform",
    "SegmentationDataset",
    "SplitReport",
    "Stage1Transform",
    "ValidationReport",
    "detect_layout",
    "generate_benchmark",
    "label_ids_to_train_ids",
    "list_splits",
    "load_benchmark",
    "make_loader",
    "open_dataset",
    "photometric_distortion",
    "read_classes_json",
    "seed_worker",
    "validate_dataset",
]

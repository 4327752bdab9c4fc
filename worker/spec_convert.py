"""JobSpec (the API's pydantic model) -> gkd_core's ExperimentConfig: the one translation table."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from gkd_core.config import BackboneConfig, Stage1Config
from gkd_core.experiment import DatasetSplit, ExperimentConfig, Stage2Config
from service.schemas import DataRef, JobSpec, ModelRef, TargetRef

# The API names the patch-feature term "feature"; gkd_core calls it "feat".
_LOSS_KEYS = {"cls": "cls", "feature": "feat", "mask": "mask"}


def _backbone(ref: ModelRef, img_size: int, resolve_weights: Callable[[str], str]) -> BackboneConfig:
    weights = ref.weights if ref.weights in ("none", "timm") else resolve_weights(ref.weights)
    return BackboneConfig(model=ref.model, weights=weights, img_size=img_size, overrides=dict(ref.overrides))


def to_experiment_config(
    spec: JobSpec,
    *,
    dataset_ref: Callable[[DataRef], DatasetSplit],
    resolve_weights: Callable[[str], str],
    device: str,
    source_eval: DatasetSplit | None = None,
    prepared_dir: Path | None = None,
    speed_overrides: dict[str, Any] | None = None,
) -> ExperimentConfig:
    """Build the library config; callers supply how dataset names and weight URIs become local paths."""
    s2 = spec.stage2
    size = s2.crop_size
    stage1 = _stage1_config(spec)
    return ExperimentConfig(
        name=spec.name,
        teacher=_backbone(spec.teacher, size, resolve_weights),
        student=_backbone(spec.student, size, resolve_weights),
        source=dataset_ref(spec.source),
        source_eval=source_eval,
        targets=[dataset_ref(t) for t in spec.targets],
        proxy=dataset_ref(spec.proxy) if spec.proxy is not None else None,
        method=spec.method,
        stage1=stage1,
        proxy_stage1=_proxy_stage1_config(spec, stage1) if spec.proxy is not None else None,
        extra_images=[dataset_ref(ref) for ref in spec.stage1.extra_images],
        stage2=Stage2Config(
            steps=s2.steps or 1,  # ignored when epochs is set: gkd_core turns epochs into steps
            epochs=s2.epochs,
            batch_size=s2.batch_size,
            lr=s2.lr,
            crop_size=s2.crop_size,
            base_size=s2.base_size,
            scale=s2.scale,
            cat_max_ratio=s2.cat_max_ratio,
            flip=s2.flip,
            photometric=s2.photometric,
            head=s2.head,
            head_channels=s2.head_channels,
            head_queries=s2.head_queries,
            head_layers=s2.head_layers,
            grad_clip=s2.grad_clip,
            checkpoint_every=s2.checkpoint_every,
        ),
        references=list(spec.references),
        seed=spec.seed,
        finetune=s2.finetune,
        device=device,
        precision=spec.resources.precision if device != "cpu" else "fp32",
        export_onnx=spec.export.onnx,
        export_int8=spec.export.int8,
        int8_calibration_images=spec.export.calibration_images,
        prepared_dir=prepared_dir,
        speed_overrides=dict(speed_overrides or {}),
    )


def local_split(root: Path, layout: str, ref: DataRef, options: dict[str, Any] | None = None) -> DatasetSplit:
    """A gkd_core DatasetSplit for a registered dataset already resolved to a local folder.

    ``options`` are the layout options the dataset was registered (and validated) with; a job names only the
    dataset and split, so every job reads the set exactly as its validation report describes it. A target's
    test-time resize and benchmark group travel with it (TargetRef).
    """
    resize = ref.resize if isinstance(ref, TargetRef) else None
    group = ref.group if isinstance(ref, TargetRef) else None
    return DatasetSplit(
        root=root, layout=layout, split=ref.split, name=f"{ref.dataset}/{ref.split}", options=dict(options or {}),
        resize=resize, group=group,
    )


def _stage1_config(spec: JobSpec) -> Stage1Config:
    """Step 1b (and everything both steps share) from ``spec.stage1``."""
    s1 = spec.stage1
    return Stage1Config(
        steps=s1.steps or 1,  # ignored when epochs is set: gkd_core turns epochs into steps
        epochs=s1.epochs,
        batch_size=s1.batch_size,
        lr=s1.lr,
        weight_decay=s1.weight_decay,
        image_size=s1.image_size,
        mask_probability=s1.mask_probability,
        mask_ratio=s1.mask_ratio,
        loss_weights={_LOSS_KEYS[k]: float(v) for k, v in s1.loss_weights.items()},
        head=s1.head,
        teacher_precision=spec.resources.precision,
        checkpoint_every=s1.checkpoint_every,
    )


def _proxy_stage1_config(spec: JobSpec, stage1: Stage1Config) -> Stage1Config:
    """Step 1a: ``stage1.proxy_step`` with everything it leaves out taken from step 1b."""
    step = spec.stage1.step_1a()
    assert step.batch_size is not None and step.image_size is not None
    return replace(
        stage1,
        steps=step.steps or 1,
        epochs=step.epochs,
        batch_size=step.batch_size,
        lr=step.lr,
        image_size=step.image_size,
        student_patch_size=step.student_patch_size,
    )

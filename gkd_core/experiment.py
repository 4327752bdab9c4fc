"""One distillation experiment end to end: stage 1 -> stage 2 (or a baseline) -> references -> evaluation -> export.

This is what the service's worker calls (``run_experiment``). Every training stage checkpoints into
``work_dir/checkpoints`` and a small ``work_dir/state.json`` records each finished phase/stage and
its output files, so a resumed attempt picks up mid-stage from the trainer's checkpoint and never
reruns a finished stage. Phases are announced through ``callbacks.on_event("phase: <name>")`` and
``callbacks.on_progress(<name>, fraction, eta)``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from gkd_core.config import BackboneConfig, Stage1Config
from gkd_core.engine.batches import StepBatches
from gkd_core.engine.callbacks import Callbacks
from gkd_core.engine.metrics import SegMetrics
from gkd_core.engine.seeding import seed_everything
from gkd_core.engine.trainer import StopRequested
from gkd_core.errors import CheckpointError, ConfigError
from gkd_core.export import ExportMeta, export_all, load_student
from gkd_core.stages.baselines import FeatureMSETask, LogitDistillTask
from gkd_core.stages.stage2 import (
    SegmentationModel,
    SegmentationTask,
    Stage2Config,
    assert_frozen,
    build_segmentation_model,
    evaluate_segmentation,
    optimizer_groups,
    source_batches,
    train_segmentation,
    train_transform,
)

_logger = logging.getLogger(__name__)

METHODS = ("gkd", "proteus", "kd", "cwd", "feature_mse", "none")
REFERENCES = ("teacher", "student_frozen", "student_finetuned")
PHASES = ("stage1", "stage2", "references", "evaluating", "exporting")
STATE_FILE = "state.json"

__all__ = [
    "METHODS",
    "REFERENCES",
    "DataRef",
    "ExperimentConfig",
    "ExperimentResult",
    "Stage2Config",
    "evaluate_exported",
    "evaluate_student",
    "run_experiment",
]


@dataclass(frozen=True)
class DataRef:
    """One split of a local dataset directory; ``name`` labels its results (default: folder/split)."""

    root: Path
    layout: str = "folder"
    split: str = "train"
    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.name or f"{Path(self.root).name}/{self.split}"

    def open(self, *, transform: Any = None, images_only: bool = False) -> Any:
        from gkd_core.data.dataset import open_dataset

        return open_dataset(
            self.root, self.layout, self.split, transform=transform, images_only=images_only, **self.options
        )


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one job needs (the worker builds this from a JobSpec)."""

    teacher: BackboneConfig
    student: BackboneConfig
    source: DataRef
    targets: list[DataRef]
    method: str = "gkd"
    proxy: DataRef | None = None
    stage1: Stage1Config = field(default_factory=Stage1Config)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    references: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    finetune: bool = False  # method "none": fine-tune the encoder instead of freezing it
    name: str = "gkd-student"
    export_onnx: bool = True
    evaluate_source: bool = True
    # The in-domain row: a held-out split of the source (e.g. its val split). Without one, the source's
    # training split is scored, which overstates in-domain accuracy.
    source_eval: DataRef | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"unknown method {self.method!r}; choose one of {METHODS}")
        unknown = [r for r in self.references if r not in REFERENCES]
        if unknown:
            raise ConfigError(f"unknown references {unknown}; choose from {REFERENCES}")
        if len(set(self.references)) != len(self.references):
            raise ConfigError(f"references are listed twice: {self.references}")
        if not self.targets:
            raise ConfigError("an experiment needs at least one target domain to evaluate")
        labels = [t.label for t in self.targets]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"target names must be unique, got {labels}")
        if self.stage2.crop_size != self.student.img_size:
            raise ConfigError(
                f"stage2.crop_size={self.stage2.crop_size} differs from the student's img_size="
                f"{self.student.img_size}; ViT students are built for one input size"
            )
        if self.method in ("gkd", "proteus") and self.stage1.image_size != self.student.img_size:
            raise ConfigError(
                f"stage1.image_size={self.stage1.image_size} differs from the student's "
                f"img_size={self.student.img_size}"
            )
        if self.precision not in ("fp32", "bf16"):
            raise ConfigError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")

    @property
    def two_stage(self) -> bool:
        return self.method in ("gkd", "proteus")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (paths as strings) for checkpoints and the model card."""

        def conv(v: Any) -> Any:
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [conv(x) for x in v]
            return v

        return conv(asdict(self))


@dataclass
class ExperimentResult:
    """Per-domain metrics of the student and of each reference, and the exported files."""

    student: dict[str, SegMetrics]
    references: dict[str, dict[str, SegMetrics]]
    exports: dict[str, Path]


class _State:
    """``work_dir/state.json``: finished stages and their outputs, written atomically."""

    def __init__(self, work_dir: Path) -> None:
        self.path = work_dir / STATE_FILE
        self.data: dict[str, Any] = {"finished": {}}
        if self.path.is_file():
            try:
                self.data = json.loads(self.path.read_text())
            except ValueError as exc:
                raise CheckpointError(f"{self.path} is corrupt ({exc}); delete it to restart the experiment") from exc

    def done(self, key: str) -> dict[str, Any] | None:
        return self.data["finished"].get(key)

    def mark(self, key: str, **info: Any) -> None:
        self.data["finished"][key] = info
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        os.replace(tmp, self.path)


class _Run:
    """The state of one ``run_experiment`` call (keeps the phase functions short)."""

    def __init__(self, cfg: ExperimentConfig, work_dir: Path, callbacks: Callbacks) -> None:
        self.cfg = cfg
        self.work_dir = work_dir
        self.ckpt = work_dir / "checkpoints"
        self.ckpt.mkdir(parents=True, exist_ok=True)
        self.cb = callbacks
        self.state = _State(work_dir)
        self.device = torch.device(cfg.device)
        train_ds = cfg.source.open()
        self.classes: list[str] = list(train_ds.classes)
        self.num_classes = int(train_ds.num_classes)
        self.ignore_index = int(train_ds.ignore_index)

    # -- helpers -------------------------------------------------------------------------------
    def phase(self, name: str) -> None:
        self.cb.on_event(f"phase: {name}")
        self.cb.on_progress(name, 0.0, None)

    def end_phase(self, name: str) -> None:
        self.cb.on_progress(name, 1.0, 0.0)
        if self.cb.should_stop():
            self.cb.on_event(f"stopped on request after phase {name}")
            raise StopRequested(name, 0, None)

    def build_backbone(self, cfg: BackboneConfig, *, fresh_weights: bool = True) -> nn.Module:
        from gkd_core.models.backbone import build_backbone

        return build_backbone(cfg if fresh_weights else replace(cfg, weights="none"))

    def teacher_seg_cfg(self) -> BackboneConfig:
        return replace(self.cfg.teacher, img_size=self.cfg.stage2.crop_size)

    def source_batches(self, seed_offset: int) -> StepBatches:
        ds = self.cfg.source.open(transform=train_transform(self.cfg.stage2, self.ignore_index))
        return source_batches(ds, self.cfg.stage2, self.cfg.seed + seed_offset)

    def save_model(self, model: nn.Module, key: str) -> Path:
        path = self.ckpt / f"{key}.safetensors"
        tmp = path.with_name(path.name + ".tmp")
        save_model(model, str(tmp))
        os.replace(tmp, path)
        return path

    def load_into(self, model: nn.Module, key: str) -> nn.Module:
        info = self.state.done(key)
        assert info is not None
        path = self.work_dir / info["file"]
        try:
            missing, unexpected = load_model(model, str(path), strict=False)
        except Exception as exc:
            raise CheckpointError(f"{path} cannot be loaded for stage {key!r}: {exc}") from exc
        if missing or unexpected:
            raise CheckpointError(
                f"{path} does not fit stage {key!r}: missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        return model

    def train_seg(
        self,
        key: str,
        build: Callable[[], tuple[nn.Module, SegmentationModel]],
        seed_offset: int,
        exclude: tuple[str, ...] = (),
    ) -> SegmentationModel:
        """Train one segmentation stage unless state.json says it is finished; return its model."""
        task, model = build()
        if self.state.done(key):
            self.cb.on_event(f"{key}: already finished, loading its weights")
            self.load_into(model, key)
            return model
        groups = optimizer_groups(model, self.cfg.stage2)
        if model.frozen_encoder:
            assert_frozen(model.backbone)
        for mod_name, module in task.named_children():
            if mod_name == "projector":
                groups += [dict(g, lr=self.cfg.stage2.lr) for g in _param_groups(module, self.cfg.stage2)]
        train_segmentation(
            task,
            groups,
            self.cfg.stage2,
            self.source_batches(seed_offset),
            stage=key,
            checkpoint_dir=self.ckpt / key,
            callbacks=self.cb,
            device=self.device,
            precision=self.cfg.precision,
            seed=self.cfg.seed + seed_offset,
            exclude_prefixes=exclude,
            config={"experiment": self.cfg.to_json(), "stage": key},
        )
        if model.frozen_encoder:
            assert_frozen(model.backbone)
        path = self.save_model(model, key)
        self.state.mark(key, file=str(path.relative_to(self.work_dir)))
        return model

    def seg_model(self, backbone: nn.Module, *, frozen: bool) -> SegmentationModel:
        s2 = self.cfg.stage2
        torch.manual_seed(self.cfg.seed)
        model = build_segmentation_model(
            backbone, s2.head, self.num_classes, channels=s2.head_channels, frozen_encoder=frozen
        )
        return model.to(self.device)

    # -- phases --------------------------------------------------------------------------------
    def stage1(self) -> nn.Module:
        """The distilled student backbone (trained now or loaded from the finished stage)."""
        cfg = self.cfg
        student = self.build_backbone(cfg.student, fresh_weights=not self.state.done("stage1"))
        if self.state.done("stage1"):
            self.cb.on_event("stage1: already finished, loading the distilled student")
            return self.load_into(student, "stage1")
        from gkd_core.data.transforms import Stage1Transform
        from gkd_core.models.teacher import build_teacher
        from gkd_core.stages.stage1 import run_stage1

        s1 = replace(cfg.stage1, head="linear") if cfg.method == "proteus" else cfg.stage1
        teacher = build_teacher(cfg.teacher, student, precision=s1.teacher_precision)  # type: ignore[arg-type]
        self.cb.on_event(f"teacher alignment: {teacher.alignment}")

        def images(ref: DataRef, seed: int) -> StepBatches:
            ds = ref.open(transform=Stage1Transform(s1.image_size), images_only=True)
            return StepBatches(
                ds,
                min(s1.batch_size, len(ds)),
                seed=seed,
                num_workers=cfg.stage2.num_workers,
                collate_fn=_collate_images,
            )

        run_stage1(
            student,  # type: ignore[arg-type]
            teacher,
            s1,
            source=images(cfg.source, cfg.seed),
            proxy=images(cfg.proxy, cfg.seed + 100) if cfg.proxy is not None else None,
            work_dir=self.ckpt / "stage1",
            callbacks=self.cb,
            device=self.device,
            precision=cfg.precision,
            seed=cfg.seed,
        )
        path = self.save_model(student, "stage1")
        self.state.mark("stage1", file=str(path.relative_to(self.work_dir)))
        return student

    def teacher_model(self) -> SegmentationModel:
        """Frozen teacher + the same head trained on the source (the teacher reference and KD's teacher)."""

        def build() -> tuple[nn.Module, SegmentationModel]:
            backbone = self.build_backbone(self.teacher_seg_cfg(), fresh_weights=not self.state.done("ref_teacher"))
            model = self.seg_model(backbone, frozen=True)
            return SegmentationTask(model, self.ignore_index), model

        return self.train_seg("ref_teacher", build, seed_offset=10)

    def main_model(self, distilled: nn.Module | None) -> SegmentationModel:
        cfg, s2 = self.cfg, self.cfg.stage2
        key = "stage2"
        if cfg.two_stage:
            assert distilled is not None

            def build() -> tuple[nn.Module, SegmentationModel]:
                model = self.seg_model(distilled, frozen=True)
                return SegmentationTask(model, self.ignore_index), model

            return self.train_seg(key, build, seed_offset=1)
        fresh = not self.state.done(key)
        if cfg.method == "none":

            def build_none() -> tuple[nn.Module, SegmentationModel]:
                model = self.seg_model(self.build_backbone(cfg.student, fresh_weights=fresh), frozen=not cfg.finetune)
                return SegmentationTask(model, self.ignore_index), model

            return self.train_seg(key, build_none, seed_offset=1)
        if cfg.method in ("kd", "cwd"):
            teacher = self.teacher_model()
            temp = s2.kd_temperature if cfg.method == "kd" else s2.cwd_temperature

            def build_logit() -> tuple[nn.Module, SegmentationModel]:
                model = self.seg_model(self.build_backbone(cfg.student, fresh_weights=fresh), frozen=False)
                task = LogitDistillTask(
                    model,
                    teacher,
                    cfg.method,
                    temperature=temp,
                    weight=s2.distill_weight,
                    ignore_index=self.ignore_index,
                )
                return task, model

            return self.train_seg(key, build_logit, seed_offset=1, exclude=("teacher.",))
        # feature_mse
        from gkd_core.models.teacher import build_teacher

        def build_feat() -> tuple[nn.Module, SegmentationModel]:
            backbone = self.build_backbone(cfg.student, fresh_weights=fresh)
            teacher = build_teacher(cfg.teacher, backbone, precision="fp32")  # type: ignore[arg-type]
            model = self.seg_model(backbone, frozen=False)
            task = FeatureMSETask(
                model, teacher, teacher.embed_dim, weight=s2.distill_weight, ignore_index=self.ignore_index
            )
            return task.to(self.device), model

        return self.train_seg(key, build_feat, seed_offset=1, exclude=("teacher.",))

    def reference(self, name: str) -> SegmentationModel:
        if name == "teacher":
            return self.teacher_model()
        frozen = name == "student_frozen"
        key = f"ref_{name}"
        fresh = not self.state.done(key)

        def build() -> tuple[nn.Module, SegmentationModel]:
            model = self.seg_model(self.build_backbone(self.cfg.student, fresh_weights=fresh), frozen=frozen)
            return SegmentationTask(model, self.ignore_index), model

        return self.train_seg(key, build, seed_offset=20 + REFERENCES.index(name))

    def domains(self) -> list[DataRef]:
        refs = list(self.cfg.targets)
        source = self.cfg.source_eval or self.cfg.source
        if self.cfg.evaluate_source and source.label not in {t.label for t in refs}:
            refs.append(source)
        return refs

    def evaluate(self, models: dict[str, SegmentationModel]) -> dict[str, dict[str, SegMetrics]]:
        done = self.state.done("evaluating")
        if done:
            self.cb.on_event("evaluating: already finished")
            return {m: {d: SegMetrics.from_dict(v) for d, v in per.items()} for m, per in done["results"].items()}
        domains = self.domains()
        total = len(models) * len(domains)
        results: dict[str, dict[str, SegMetrics]] = {}
        count = 0
        for model_name, model in models.items():
            results[model_name] = {}
            for ref in domains:
                results[model_name][ref.label] = _evaluate(model, ref, self.num_classes, self.cfg.stage2, self.device)
                count += 1
                self.cb.on_progress("evaluating", count / total, None)
                self.cb.on_event(
                    f"evaluating: {model_name} on {ref.label}: mIoU {results[model_name][ref.label].miou:.4f}"
                )
        self.state.mark(
            "evaluating", results={m: {d: v.to_dict() for d, v in per.items()} for m, per in results.items()}
        )
        return results

    def export(self, model: SegmentationModel, results: dict[str, dict[str, SegMetrics]]) -> dict[str, Path]:
        done = self.state.done("exporting")
        if done:
            self.cb.on_event("exporting: already finished")
            return {k: self.work_dir / v for k, v in done["files"].items()}
        cfg = self.cfg
        meta = ExportMeta(
            model=cfg.student.model,
            num_classes=self.num_classes,
            head=cfg.stage2.head,
            head_channels=cfg.stage2.head_channels,
            indices=list(model.indices),
            image_size=cfg.stage2.crop_size,
            backbone_img_size=cfg.student.img_size,
            overrides=dict(cfg.student.overrides),
            classes=self.classes,
            method=cfg.method,
            teacher=cfg.teacher.model if cfg.method != "none" else None,
            name=cfg.name,
        )
        refs = {k: v for k, v in results.items() if k != "student"}
        paths = export_all(
            model.cpu(),
            meta,
            self.work_dir / "export",
            results["student"],
            refs,
            source=cfg.source.label,
            onnx=cfg.export_onnx,
        )
        model.to(self.device)
        self.state.mark("exporting", files={k: str(p.relative_to(self.work_dir)) for k, p in paths.items()})
        return paths


def _param_groups(module: nn.Module, s2: Stage2Config) -> list[dict[str, Any]]:
    from gkd_core.engine.optim import param_groups

    return param_groups(module, s2.weight_decay)


def _collate_images(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image": torch.stack([it["image"] for it in items]), "name": [it["name"] for it in items]}


def _evaluate(model: nn.Module, ref: DataRef, num_classes: int, s2: Stage2Config, device: torch.device) -> SegMetrics:
    ds = ref.open()
    if int(ds.num_classes) != num_classes:
        raise ConfigError(f"domain {ref.label} has {ds.num_classes} classes but the source has {num_classes}")
    return evaluate_segmentation(
        model, ds, num_classes, window=s2.window, stride=s2.stride, device=device, ignore_index=int(ds.ignore_index)
    )


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
    run = _Run(cfg, work_dir, cb)
    cb.on_event(f"experiment {cfg.name}: method {cfg.method}, {run.num_classes} classes, work dir {work_dir}")

    distilled: nn.Module | None = None
    if cfg.two_stage:
        run.phase("stage1")
        distilled = run.stage1()
        run.end_phase("stage1")
    run.phase("stage2")
    student = run.main_model(distilled)
    run.end_phase("stage2")

    models: dict[str, SegmentationModel] = {"student": student}
    if cfg.references:
        run.phase("references")
        for name in cfg.references:
            models[name] = run.reference(name)
        run.end_phase("references")

    run.phase("evaluating")
    results = run.evaluate(models)
    run.end_phase("evaluating")

    run.phase("exporting")
    exports = run.export(student, results)
    cb.on_progress("exporting", 1.0, 0.0)
    cb.on_event("experiment finished")
    return ExperimentResult(
        student=results["student"],
        references={k: v for k, v in results.items() if k != "student"},
        exports=exports,
    )


def evaluate_student(
    path: Path,
    targets: Sequence[DataRef],
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
    win = window or meta.image_size
    s2 = Stage2Config(steps=1, crop_size=max(32, win), eval_window=win, eval_stride=stride)
    dev = torch.device(device)
    return {ref.label: _evaluate(model, ref, meta.num_classes, s2, dev) for ref in targets}


evaluate_exported = evaluate_student

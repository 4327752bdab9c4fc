"""The shared state and helpers of one experiment run, used by the runner and by the method modules.

Every training stage checkpoints into ``work_dir/checkpoints`` and ``work_dir/state.json`` records
each finished stage and phase with its output files, so a resumed attempt continues mid-stage from
the trainer's checkpoint and never reruns a finished stage. Methods (gkd_core.methods) build their
stage tasks through :meth:`ExperimentRun.distil`, :meth:`ExperimentRun.train_seg` and friends.

Under data parallelism every rank runs the experiment; rank 0 alone writes files (state.json, stage
weights, exports), every rank keeps the same in-memory state, and stops are agreed by all ranks.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from gkd_core.config import BackboneConfig, Stage1Config
from gkd_core.data.photometric import DeferredPhotometric, apply_deferred
from gkd_core.data.prepared import decide, prepare, stage_short_side
from gkd_core.engine import distributed
from gkd_core.engine.batches import StepBatches
from gkd_core.engine.callbacks import Callbacks, Phase
from gkd_core.engine.metrics import SegMetrics
from gkd_core.engine.speed import speed_defaults
from gkd_core.engine.trainer import StopRequested
from gkd_core.errors import CheckpointError, ConfigError
from gkd_core.experiment.config import REFERENCES, DatasetSplit, ExperimentConfig
from gkd_core.experiment.deployed_eval import deployed_models, evaluate_deployed
from gkd_core.experiment.similarity import teacher_similarity
from gkd_core.export import ExportMeta, export_all, read_export_meta, write_model_card
from gkd_core.methods import get_method
from gkd_core.robustness import build_report, write_report
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

STATE_FILE = "state.json"
STAGE1_KEY = "stage1"
STAGE2_KEY = "stage2"

SegBuilder = Callable[[], tuple[nn.Module, SegmentationModel]]


class RunState:
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
        if not distributed.is_main():
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True))
        os.replace(tmp, self.path)


class ExperimentRun:
    """The state of one ``run_experiment`` call: config, work folder, callbacks, source classes."""

    def __init__(self, cfg: ExperimentConfig, work_dir: Path, callbacks: Callbacks) -> None:
        self.cfg = cfg
        self.method = get_method(cfg.method)
        self.work_dir = work_dir
        self.ckpt = work_dir / "checkpoints"
        self.ckpt.mkdir(parents=True, exist_ok=True)
        self.cb = callbacks
        self.state = RunState(work_dir)
        self.device = torch.device(cfg.device)
        self.speed = speed_defaults(self.device, overrides=cfg.speed_overrides)
        train_ds = cfg.source.open()
        self.classes: list[str] = list(train_ds.classes)
        self.num_classes = int(train_ds.num_classes)
        self.ignore_index = int(train_ds.ignore_index)
        self._reported: set[str] = set()
        # Stage 2 and every reference train by the same schedule; epochs count the source's labelled pairs.
        self.stage2 = cfg.stage2.resolved(len(train_ds))
        if cfg.stage2.epochs is not None:
            self.cb.on_event(
                f"stage2: {cfg.stage2.epochs:g} epochs of {len(train_ds):,} labelled pairs at batch "
                f"{cfg.stage2.batch_size} = {self.stage2.steps:,} steps"
            )

    # -- phases --------------------------------------------------------------------------------
    def begin(self, phase: Phase) -> None:
        self.cb.on_phase(phase)
        self.cb.on_progress(phase.value, 0.0, None)

    def end(self, phase: Phase) -> None:
        self.cb.on_progress(phase.value, 1.0, 0.0)
        if distributed.any_rank(self.cb.should_stop()):
            self.cb.on_event(f"stopped on request after phase {phase.value}")
            raise StopRequested(phase.value, 0, None)

    # -- building blocks for methods -------------------------------------------------------------
    def fresh(self, key: str) -> bool:
        """True when stage ``key`` has not finished yet (its weights must be trained, not loaded)."""
        return not self.state.done(key)

    def build_backbone(self, cfg: BackboneConfig, *, fresh_weights: bool = True) -> nn.Module:
        from gkd_core.models.backbone import build_backbone

        return build_backbone(cfg if fresh_weights else replace(cfg, weights="none"))

    def seg_model(self, backbone: nn.Module, *, frozen: bool) -> SegmentationModel:
        s2 = self.stage2
        torch.manual_seed(self.cfg.seed)
        model = build_segmentation_model(
            backbone,
            s2.head,
            self.num_classes,
            channels=s2.head_channels,
            frozen_encoder=frozen,
            head_options=s2.head_options(),
        )
        return model.to(self.device)

    def source_batches(self, seed_offset: int) -> StepBatches:
        """Stage-2 batches of the source. On CUDA the photometric distortion runs on the GPU after
        collation (drawn in the loader, applied to the batch: the same result, see data/photometric.py)."""
        s2 = self.stage2
        defer = self.device.type == "cuda" and s2.photometric
        ds = self.cfg.source.open(transform=train_transform(replace(s2, photometric=False) if defer else s2,
                                                            self.ignore_index))  # fmt: skip
        self.report_pair_issues(self.cfg.source, ds)
        short = stage_short_side("stage2", image_size=s2.crop_size, base_size=s2.base_size, max_scale=s2.scale[1])
        ds = self.training_set(self.cfg.source, ds, short, reads=s2.steps * s2.batch_size)
        return source_batches(
            DeferredPhotometric(ds) if defer else ds,
            s2,
            self.cfg.seed + seed_offset,
            device=self.device,
            batch_transform=apply_deferred if defer else None,
        )

    def training_set(self, split: DatasetSplit, ds: Any, short_side: int | None, *, reads: int) -> Any:
        """``ds`` read from its prepared store when the experiment has a ``prepared_dir`` and it pays off."""
        where = self.cfg.prepared_dir
        if where is None:
            return ds
        decision = decide(ds, where, short_side, reads)
        if not decision.prepare:
            self.cb.on_event(f"{split.label}: read from the image files, not prepared ({decision.reason})")
            return ds
        size = "native size" if short_side is None else f"short side <= {short_side}"
        self.cb.on_event(
            f"{split.label}: reading a prepared store ({size}, {decision.bytes_needed / 2**30:.2f} GiB; "
            f"{decision.reason}); the first use decodes the split once"
        )
        return prepare(ds, where, short_side)

    def report_pair_issues(self, split: DatasetSplit, ds: Any) -> None:
        """One event per labelled split that left pairs out (image/label sizes differ, unreadable headers)."""
        skipped = list(getattr(ds, "skipped", ()))
        key = f"pairs:{split.label}"
        if not skipped or key in self._reported:
            return
        self._reported.add(key)
        shown = "; ".join(f"{p.name} ({p.detail})" for p in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        self.cb.on_event(f"{split.label}: {len(skipped)} image/label pair(s) skipped: {shown}{more}")

    def save_model(self, model: nn.Module, key: str) -> Path:
        path = self.ckpt / f"{key}.safetensors"
        if not distributed.is_main():
            return path
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
        self, key: str, build: SegBuilder, seed_offset: int, exclude: tuple[str, ...] = ()
    ) -> SegmentationModel:
        """Train one segmentation stage unless state.json says it is finished; return its model."""
        task, model = build()
        if self.state.done(key):
            self.cb.on_event(f"{key}: already finished, loading its weights")
            self.load_into(model, key)
            return model
        groups = optimizer_groups(model, self.stage2)
        if model.frozen_encoder:
            assert_frozen(model.backbone)
        for mod_name, module in task.named_children():
            if mod_name == "projector":
                groups += [dict(g, lr=self.stage2.lr) for g in _param_groups(module, self.stage2)]
        train_segmentation(
            task,
            groups,
            self.stage2,
            self.source_batches(seed_offset),
            stage=key,
            checkpoint_dir=self.ckpt / key,
            callbacks=self.cb,
            device=self.device,
            precision=self.cfg.precision,
            seed=self.cfg.seed + seed_offset,
            speed=self.speed,
            exclude_prefixes=exclude,
            config={"experiment": self.cfg.to_json(), "stage": key},
        )
        if model.frozen_encoder:
            assert_frozen(model.backbone)
        path = self.save_model(model, key)
        self.state.mark(key, file=str(path.relative_to(self.work_dir)))
        return model

    def distil(self, *, source: Stage1Config | None, proxy: Stage1Config | None) -> nn.Module:
        """Stage 1: the distilled student backbone (trained now or loaded when finished).

        ``proxy`` configures step 1a on the experiment's proxy set (skipped when either is None) and
        ``source`` step 1b on the source images (skipped when None). Epochs become steps here, from the
        size of each step's image set, and every step's plan is announced before training starts.
        The student is saved at the stage-2 geometry (its native patch, the stage-2 input size).
        """
        cfg = self.cfg
        student: Any = self.build_backbone(cfg.student, fresh_weights=self.fresh(STAGE1_KEY))
        if self.state.done(STAGE1_KEY):
            self.cb.on_event("stage1: already finished, loading the distilled student")
            return self.load_into(student, STAGE1_KEY)
        from gkd_core.models.teacher import build_teacher
        from gkd_core.stages.stage1 import STAGE1A, STAGE1B, run_stage1

        native_patch = student.native_patch_size
        proxy_batches = source_batches = None
        if proxy is not None and cfg.proxy is not None:
            proxy, proxy_batches = self._stage1_images(STAGE1A, [cfg.proxy], proxy, cfg.seed + 100)
        if source is not None:
            source, source_batches = self._stage1_images(STAGE1B, [cfg.source, *cfg.extra_images], source, cfg.seed)
        if proxy_batches is None and source_batches is None:
            raise ConfigError(f"method {cfg.method!r} distils on the proxy set, but the experiment has none")

        def teacher_for(aligned_to: Any) -> Any:
            # A fresh teacher per step, built at the step's input size (run_stage1 sets its precision): 1a
            # gets the native patch-14 teacher, 1b the kernel-resized one. Built under its own seed so a
            # randomly initialised teacher is the same in both steps and on a resumed attempt.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                return build_teacher(replace(cfg.teacher, img_size=aligned_to.img_size), aligned_to)

        run_stage1(
            student,
            teacher_for,
            source or proxy,  # type: ignore[arg-type]
            source=source_batches,
            proxy=proxy_batches,
            proxy_cfg=proxy,
            work_dir=self.ckpt / "stage1",
            callbacks=self.cb,
            device=self.device,
            precision=cfg.precision,
            seed=cfg.seed,
            speed=self.speed,
        )
        back = student.set_geometry(img_size=cfg.student.img_size, patch_size=native_patch)
        self.cb.on_event(f"stage1: student handed to stage 2 as {back}")
        path = self.save_model(student, STAGE1_KEY)
        self.state.mark(STAGE1_KEY, file=str(path.relative_to(self.work_dir)))
        return cast(nn.Module, student)

    def _stage1_images(
        self, stage: str, splits: list[DatasetSplit], s1: Stage1Config, seed: int
    ) -> tuple[Stage1Config, StepBatches]:
        """One step's image batches at its own size, and its config with epochs turned into steps.

        Several splits (the source plus a team's extra unlabelled images) are read as one image set.
        """
        from torch.utils.data import ConcatDataset

        from gkd_core.data.transforms import Stage1Transform

        parts = [split.open(transform=Stage1Transform(s1.image_size), images_only=True) for split in splits]
        total = sum(len(p) for p in parts)
        resolved = s1.resolved(total)
        batch = min(resolved.batch_size, total)
        short = stage_short_side("stage1", image_size=s1.image_size)
        parts = [
            self.training_set(split, part, short, reads=resolved.steps * batch)
            for split, part in zip(splits, parts, strict=True)
        ]
        ds = parts[0] if len(parts) == 1 else ConcatDataset(parts)
        if len(parts) > 1:
            extra = sum(len(p) for p in parts[1:])
            self.cb.on_event(
                f"{stage}: {len(parts[0]):,} source images + {extra:,} extra unlabelled images from "
                f"{', '.join(s.label for s in splits[1:])}"
            )
        if s1.epochs is not None:
            self.cb.on_event(
                f"{stage}: {s1.epochs:g} epochs of {len(ds):,} images at batch {s1.batch_size} = "
                f"{resolved.steps:,} steps"
            )
        batches = StepBatches(
            ds,
            batch,
            seed=seed,
            num_workers=self.stage2.num_workers,
            collate_fn=_collate_images,
            device=self.device,
        )
        return resolved, batches

    def train_head_on_frozen(self, encoder: nn.Module) -> SegmentationModel:
        """Stage 2 of the decoupled methods: a head trained on the frozen, distilled encoder."""

        def build() -> tuple[nn.Module, SegmentationModel]:
            model = self.seg_model(encoder, frozen=True)
            return SegmentationTask(model, self.ignore_index), model

        return self.train_seg(STAGE2_KEY, build, seed_offset=1)

    def teacher_model(self) -> SegmentationModel:
        """Frozen teacher + the same head trained on the source (the teacher reference and KD's teacher)."""

        def build() -> tuple[nn.Module, SegmentationModel]:
            teacher_cfg = replace(self.cfg.teacher, img_size=self.stage2.crop_size)
            backbone = self.build_backbone(teacher_cfg, fresh_weights=self.fresh("ref_teacher"))
            model = self.seg_model(backbone, frozen=True)
            return SegmentationTask(model, self.ignore_index), model

        return self.train_seg("ref_teacher", build, seed_offset=10)

    def student_reference(self, name: str, *, frozen: bool) -> SegmentationModel:
        """The student without distillation and the same head: frozen or fine-tuned."""
        key = f"ref_{name}"
        fresh = self.fresh(key)

        def build() -> tuple[nn.Module, SegmentationModel]:
            model = self.seg_model(self.build_backbone(self.cfg.student, fresh_weights=fresh), frozen=frozen)
            return SegmentationTask(model, self.ignore_index), model

        return self.train_seg(key, build, seed_offset=20 + REFERENCES.index(name))

    def reference(self, name: str) -> SegmentationModel:
        builders: dict[str, Callable[[], SegmentationModel]] = {
            "teacher": self.teacher_model,
            "student_frozen": lambda: self.student_reference("student_frozen", frozen=True),
            "student_finetuned": lambda: self.student_reference("student_finetuned", frozen=False),
        }
        return builders[name]()

    # -- evaluation and export -------------------------------------------------------------------
    def domains(self) -> list[DatasetSplit]:
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
                results[model_name][ref.label] = evaluate_split(model, ref, self.num_classes, self.stage2, self.device)
                count += 1
                self.cb.on_progress(Phase.EVALUATING.value, count / total, None)
                self.cb.on_event(
                    f"evaluating: {model_name} on {ref.label}: mIoU {results[model_name][ref.label].miou:.4f}"
                )
        self.state.mark(
            "evaluating", results={m: {d: v.to_dict() for d, v in per.items()} for m, per in results.items()}
        )
        return results

    def similarity(self, models: dict[str, SegmentationModel]) -> dict[str, dict[str, float]]:
        """Linear CKA to the teacher per student-encoder model and domain (stored, so a resume reuses it)."""
        done = self.state.done("similarity")
        if done:
            return {name: dict(per) for name, per in done["cka"].items()}
        cka = teacher_similarity(self, models) if distributed.is_main() else {}
        self.state.mark("similarity", cka=cka)
        return cka

    def averages(self, per_domain: dict[str, SegMetrics]) -> dict[str, float]:
        """Mean mIoU over every target ("targets") and over each benchmark group of targets (e.g. "GTAV")."""
        groups: dict[str, list[str]] = {"targets": [t.label for t in self.cfg.targets]}
        for target in self.cfg.targets:
            if target.group:
                groups.setdefault(target.group, []).append(target.label)
        return {
            name: sum(per_domain[label].miou for label in labels) / len(labels)
            for name, labels in groups.items()
            if labels and all(label in per_domain for label in labels)
        }

    def export(
        self,
        model: SegmentationModel,
        results: dict[str, dict[str, SegMetrics]],
        similarity: dict[str, dict[str, float]] | None = None,
    ) -> Exported:
        """Write the student's files and model card, score the deployable files on every domain, then the report."""
        done = self.state.done("exporting")
        if done:
            self.cb.on_event("exporting: already finished")
            stored = done.get("deployed", {})
            deployed = {k: {d: SegMetrics.from_dict(v) for d, v in per.items()} for k, per in stored.items()}
            return Exported({k: self.work_dir / v for k, v in done["files"].items()}, deployed, done.get("report", {}))
        if not distributed.is_main():
            return Exported({}, {}, {})
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
            teacher=cfg.teacher.model if self.method.traits.teacher != "unused" else None,
            name=cfg.name,
            extra_stage1_images=[split.label for split in cfg.extra_images] if self.method.traits.two_stage else [],
        )
        refs = {k: v for k, v in results.items() if k != "student"}
        averages = {name: self.averages(per) for name, per in results.items()}
        out_dir = self.work_dir / "export"
        paths = export_all(
            model.cpu(),
            meta,
            out_dir,
            results["student"],
            refs,
            source=cfg.source.label,
            onnx=cfg.export_onnx,
            averages=averages,
        )
        model.to(self.device)
        files = deployed_models(self, paths)
        paths.update({k: v for k, v in files.items() if k not in paths})
        deployed = evaluate_deployed(self, files, results["student"])
        report = self.robustness_report(results, deployed, similarity or {})
        paths.update(write_report(out_dir, report))
        paths.update(  # the card shows the deployed rows and a summary of the report
            write_model_card(
                out_dir,
                read_export_meta(paths["student"]),
                results["student"],
                refs,
                source=cfg.source.label,
                averages=averages,
                deployed=deployed,
                report=report,
            )
        )
        self.state.mark(
            "exporting",
            files={k: str(p.relative_to(self.work_dir)) for k, p in paths.items()},
            deployed={k: {d: v.to_dict() for d, v in per.items()} for k, per in deployed.items()},
            report=report,
        )
        return Exported(paths, deployed, report)

    def robustness_report(
        self,
        results: dict[str, dict[str, SegMetrics]],
        deployed: dict[str, dict[str, SegMetrics]],
        similarity: dict[str, dict[str, float]],
    ) -> dict[str, Any]:
        """The job's report.json content: every row it ran, the teacher-lead fraction, CKA to the teacher."""
        rows = {name: {d: m.miou for d, m in per.items()} for name, per in results.items()}
        rows.update({f"student ({kind})": {d: m.miou for d, m in per.items()} for kind, per in deployed.items()})
        source = self.cfg.source_eval or self.cfg.source
        return build_report(
            rows=rows,
            targets=[t.label for t in self.cfg.targets],
            source=source.label if self.cfg.evaluate_source else None,
            similarity=similarity,
            method=self.cfg.method,
        )


@dataclass(frozen=True)
class Exported:
    """The exported files by kind, and each deployable file's per-domain metrics ("onnx", "int8")."""

    files: dict[str, Path]
    deployed: dict[str, dict[str, SegMetrics]]
    report: dict[str, Any]


def _param_groups(module: nn.Module, s2: Stage2Config) -> list[dict[str, Any]]:
    from gkd_core.engine.optim import param_groups

    return param_groups(module, s2.weight_decay)


def _collate_images(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"image": torch.stack([it["image"] for it in items]), "name": [it["name"] for it in items]}


def evaluate_split(
    model: nn.Module, ref: DatasetSplit, num_classes: int, s2: Stage2Config, device: torch.device
) -> SegMetrics:
    """mIoU and friends of ``model`` on one labelled split (sliding window as configured)."""
    ds = ref.open()
    if int(ds.num_classes) != num_classes:
        raise ConfigError(f"domain {ref.label} has {ds.num_classes} classes but the source has {num_classes}")
    return evaluate_segmentation(
        model,
        ds,
        num_classes,
        window=s2.window,
        stride=s2.stride,
        device=device,
        ignore_index=int(ds.ignore_index),
        resize=ref.resize,
    )

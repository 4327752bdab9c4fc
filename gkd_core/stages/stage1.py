"""GKD stage 1: label-free representation distillation (Lv et al., CVPR 2026, Sec. 3.1-3.2).

Per step the frozen teacher sees the unmasked images and gives final-normed tokens (t, T). The
student is run on a clean view and on a masked view (shared weights): the first
``mask_probability`` of the batch has ``mask_ratio`` of its patch embeddings replaced by one
learnable mask token before position embeddings. Three heads map student tokens to the teacher
space (QSD for GKD, LayerNorm + Linear for Proteus)::

    L_cls  = MSE(head_cls(s_cls), t)
    L_feat = MSE([head_cls(s_cls); QSD_feat(S_clean, T)], [t; T])      # CLS row first
    L_mask = MSE(QSD_mask(S_masked, T), T)                               # all positions (or masked only)
    L      = w_cls L_cls + w_feat L_feat + w_mask L_mask

Stage 1 runs as an optional proxy step (1a) then the source step (1b); each starts with fresh heads
and a fresh optimizer, and only the student backbone's weights carry over.

Efficiency: the unmasked images of the masked view are exactly their clean view when the student
has no stochastic layers (no dropout / drop path), so only the masked images are run a second time,
batched together with the clean view in one forward. With stochastic layers both views are run in full.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from gkd_core.config import Stage1Config
from gkd_core.engine import BatchSource, Callbacks, FitResult, adamw_cosine, fit
from gkd_core.engine.speed import SpeedOptions, adamw_fused, speed_defaults
from gkd_core.errors import ConfigError
from gkd_core.losses.qsd import ProjectionHead, build_token_head
from gkd_core.models.backbone import Backbone, TokenOutput
from gkd_core.models.teacher import Teacher, align_teacher_to_student

_logger = logging.getLogger(__name__)

STAGE1A = "stage1a"
STAGE1B = "stage1b"


def _has_stochastic_layers(module: nn.Module) -> bool:
    """True when a forward in train mode is random (dropout or drop path with p > 0)."""
    for sub in module.modules():
        p = getattr(sub, "drop_prob", None) if "DropPath" in type(sub).__name__ else None
        if isinstance(sub, nn.modules.dropout._DropoutNd):
            p = sub.p
        if p:
            return True
    return False


def make_patch_mask(
    batch: int, num_patches: int, mask_probability: float, mask_ratio: float, device: torch.device
) -> torch.Tensor:
    """Bool B x N mask: the first ``floor(B * probability)`` images get ``floor(N * ratio)`` random positions.

    Positions are chosen uniformly at random without replacement per image (global torch RNG, so
    checkpoints that save RNG states resume the same masks).
    """
    mask = torch.zeros(batch, num_patches, dtype=torch.bool, device=device)
    rows = int(batch * mask_probability)
    count = int(num_patches * mask_ratio)
    if rows and count:
        order = torch.rand(rows, num_patches, device=device).argsort(dim=1)
        mask[:rows].scatter_(1, order[:, :count], True)
    return mask


class Stage1Task(nn.Module):
    """The stage-1 training task: ``forward(batch) -> {"loss", "loss_cls", "loss_feat", "loss_mask"}``.

    Trainable parameters are the student's and the three heads'; the teacher is frozen.

    Args:
        student: the student backbone (a ViT unless ``cfg.mask_probability == 0``).
        teacher: the frozen teacher, already aligned to the student (see ``align_teacher_to_student``).
        cfg: stage-1 options (head kind, masking, loss weights, mask-loss positions).
    """

    def __init__(self, student: Backbone, teacher: Teacher, cfg: Stage1Config) -> None:
        super().__init__()
        if cfg.mask_probability > 0 and cfg.mask_ratio > 0 and not student.supports_masking:
            raise ConfigError(
                f"student {student.name!r} cannot take a masked view (not a ViT); "
                "set Stage1Config.mask_probability=0 to train it without the masked view"
            )
        self.student = student
        self.teacher = teacher
        self.cfg = cfg
        cs, ct = student.embed_dim, teacher.embed_dim
        self.heads = nn.ModuleDict(
            {
                "cls": ProjectionHead(cs, ct),
                "feat": build_token_head(cfg.head, cs, ct),
                "mask": build_token_head(cfg.head, cs, ct),
            }
        )
        self._exact_reuse = not _has_stochastic_layers(student)

    def _student_views(self, images: torch.Tensor, mask: torch.Tensor) -> tuple[TokenOutput, torch.Tensor]:
        """Clean-view tokens and masked-view patch tokens (B x N x C) of the student."""
        rows = int(mask.any(dim=1).sum())
        if rows == 0:
            clean = self.student.forward_tokens(images)
            return clean, clean.patches
        batch = images.shape[0]
        if self._exact_reuse:
            # One forward over [clean batch; masked images]: the unmasked rest of the masked view is its clean view.
            both = self.student.forward_tokens(
                torch.cat([images, images[:rows]]), torch.cat([torch.zeros_like(mask), mask[:rows]])
            )
            clean = TokenOutput(both.cls[:batch], both.patches[:batch], both.grid)
            masked = torch.cat([both.patches[batch:], clean.patches[rows:]])
            return clean, masked
        clean = self.student.forward_tokens(images)
        return clean, self.student.forward_tokens(images, mask).patches

    def forward(self, batch: Mapping[str, Any] | torch.Tensor) -> dict[str, torch.Tensor]:
        """Compute the stage-1 losses for a batch of float [0, 1] images (``batch["image"]``)."""
        images = batch["image"] if isinstance(batch, Mapping) else batch
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError("stage 1 expects batches with 'image': float B x 3 x H x W in [0, 1]")
        grid = self.student.grid_for(int(images.shape[-2]), int(images.shape[-1]))
        target = self.teacher(images, grid=grid)
        t_cls, t_patches = target.cls, target.patches
        mask = make_patch_mask(
            images.shape[0], grid[0] * grid[1], self.cfg.mask_probability, self.cfg.mask_ratio, images.device
        )
        clean, masked_patches = self._student_views(images, mask)

        pred_cls = self.heads["cls"](clean.cls).float()
        pred_feat = self.heads["feat"](clean.patches, t_patches).float()
        pred_mask = self.heads["mask"](masked_patches, t_patches).float()

        loss_cls = F.mse_loss(pred_cls, t_cls)
        loss_feat = F.mse_loss(
            torch.cat([pred_cls.unsqueeze(1), pred_feat], dim=1), torch.cat([t_cls.unsqueeze(1), t_patches], dim=1)
        )
        if self.cfg.mask_loss_on == "all":
            loss_mask = F.mse_loss(pred_mask, t_patches)
        elif bool(mask.any()):
            loss_mask = (pred_mask - t_patches).pow(2).mean(dim=-1)[mask].mean()
        else:
            loss_mask = pred_mask.sum() * 0.0  # keeps the graph connected when nothing was masked
        loss = (
            self.cfg.weight("cls") * loss_cls
            + self.cfg.weight("feat") * loss_feat
            + self.cfg.weight("mask") * loss_mask
        )
        return {
            "loss": loss,
            "loss_cls": loss_cls.detach(),
            "loss_feat": loss_feat.detach(),
            "loss_mask": loss_mask.detach(),
        }


BatchesLike = BatchSource | Callable[[int], Iterator[Any]] | Iterable[Any]


def as_batch_source(batches: BatchesLike) -> BatchSource:
    """A step-indexed batch source; plain iterables are cycled and skipped to the start step.

    Pass ``gkd_core.engine.StepBatches`` (or another callable) for exact resumes; a plain iterable
    is re-iterated from its beginning on resume, which is exact only when it is deterministic.
    """
    if callable(batches):
        return cast(BatchSource, batches)
    items = batches

    def source(start_step: int) -> Iterator[Any]:
        return itertools.islice(itertools.cycle(items), start_step, None)

    return source


@dataclass
class Stage1Result:
    """What stage 1 hands on: the distilled student and each step's fit result."""

    student: Backbone
    alignment: str
    results: dict[str, FitResult] = field(default_factory=dict)


TeacherFactory = Callable[[Backbone], Teacher]
"""Builds a fresh teacher aligned to the student's current geometry (one per step of stage 1)."""


def _teacher_for(teacher: Teacher | TeacherFactory, student: Backbone) -> Teacher:
    if isinstance(teacher, Teacher):
        align_teacher_to_student(teacher, student)
        return teacher
    return teacher(student)


def run_stage1(
    student: Backbone,
    teacher: Teacher | TeacherFactory,
    cfg: Stage1Config,
    *,
    source: BatchesLike | None,
    proxy: BatchesLike | None = None,
    proxy_cfg: Stage1Config | None = None,
    work_dir: Path | None = None,
    callbacks: Callbacks | None = None,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    seed: int = 0,
    speed: SpeedOptions | None = None,
) -> Stage1Result:
    """Run stage 1: the optional proxy step 1a, then the source step 1b.

    Each step sets the student's geometry for that step (input size, and patch size: the paper runs
    1a with the student's kernel resized 16 -> 14 so a patch-14 teacher runs natively, and 1b back at
    16), aligns a teacher to it, and builds a fresh :class:`Stage1Task` (fresh heads) and a fresh
    AdamW + cosine schedule (lr ``effective_lr``, to ``min_lr``, no warmup); only the student's
    weights carry over. Checkpoints go to ``work_dir`` (teacher excluded); a finished step is not
    rerun on resume. The student is left at the geometry of the last step.

    Args:
        student: the student backbone (trained in place).
        teacher: a factory that builds a teacher aligned to the student as it is at the start of each
            step (what :func:`gkd_core.experiment.run_experiment` passes), or one ``Teacher`` that is
            re-aligned in place (fine when both steps share the same geometry).
        cfg: step 1b's options (``cfg.steps`` optimizer steps; epochs must be resolved first).
        source: batches of source-domain images (``{"image": B x 3 x H x W}``), step-indexed or iterable,
            for step 1b; None skips it (Proteus distils on the proxy set only).
        proxy: batches of proxy images for step 1a, or None to skip it.
        proxy_cfg: step 1a's options (default: ``cfg``).
        work_dir: checkpoint directory (None: no checkpoints, no resume).
        callbacks: metrics, progress, events, checkpoint and stop hooks.
        device: where to train.
        precision: "fp32" or "bf16" autocast for the student (the teacher follows ``teacher_precision``).
        seed: seeds every RNG at a fresh start of each step (1b uses ``seed + 1``).
        speed: fused AdamW, attention kernel, channels-last, compile; None: the defaults measured
            for ``device`` (:func:`gkd_core.engine.speed.speed_defaults`).

    Raises:
        ConfigError: no image set at all, epochs not resolved to steps, or a geometry the student cannot take.
        gkd_core.engine.StopRequested: the callbacks asked to stop (a checkpoint was saved).
    """
    callbacks = callbacks or Callbacks()
    speed = speed if speed is not None else speed_defaults(device)
    plan: list[tuple[str, BatchesLike, Stage1Config, int]] = []
    if proxy is not None:
        plan.append((STAGE1A, proxy, proxy_cfg or cfg, seed))
    if source is not None:
        plan.append((STAGE1B, source, cfg, seed + 1))
    if not plan:
        raise ConfigError("stage 1 needs proxy images (step 1a), source images (step 1b) or both")
    native_patch = student.native_patch_size
    result = Stage1Result(student=student, alignment="")
    for stage, batches, step_cfg, stage_seed in plan:
        if step_cfg.epochs is not None:
            raise ConfigError(f"{stage}: resolve epochs to steps first (Stage1Config.resolved(num_images))")
        geometry = student.set_geometry(
            img_size=step_cfg.image_size, patch_size=step_cfg.student_patch_size or native_patch
        )
        step_teacher = _teacher_for(teacher, student)
        step_teacher.precision = step_cfg.teacher_precision
        result.alignment = step_teacher.alignment
        callbacks.on_event(f"{stage} token grids: {geometry}; {step_teacher.alignment}")
        torch.manual_seed(stage_seed)  # fresh heads are initialised reproducibly
        task = Stage1Task(student, step_teacher, step_cfg)
        optimizer, scheduler = adamw_cosine(
            task,
            step_cfg.effective_lr,
            step_cfg.weight_decay,
            steps=step_cfg.steps,
            min_lr=step_cfg.min_lr,
            warmup=0,
            fused=adamw_fused(speed, device),
        )
        callbacks.on_event(
            f"{stage}: {step_cfg.steps} steps at batch {step_cfg.batch_size}, {step_cfg.image_size} px, "
            f"lr {step_cfg.effective_lr:.3g}, heads {step_cfg.head}"
        )
        result.results[stage] = fit(
            task,
            optimizer,
            scheduler,
            as_batch_source(batches),
            steps=step_cfg.steps,
            stage=stage,
            checkpoint_dir=work_dir,
            callbacks=callbacks,
            checkpoint_every=step_cfg.checkpoint_every,
            device=device,
            precision=precision,
            seed=stage_seed,
            config={"stage1": asdict(step_cfg), "student": student.name, "teacher": step_teacher.backbone.name},
            exclude_prefixes=("teacher.",),
            speed=speed,
        )
    student.eval()
    return result

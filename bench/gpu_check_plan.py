"""Sizes, timing and out-of-memory helpers of bench/gpu_check.py (see that file for what it measures).

:class:`Plan` holds every size: :func:`full_plan` the paper's (DINOv2 ViT-B/14 teacher, DeiT-S/16
student, 512 px x 32 for step 1b, 224 px x 128 for step 1a, 512 px stage 2), :func:`smoke_plan` a
toy that runs on a CPU in seconds. On CUDA a call is timed with CUDA events after a sync.
"""

from __future__ import annotations

import contextlib
import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

import gkd_core  # noqa: F401  (torchvision shim before timm)

# isort: split
from bench.dataloader import Workload
from gkd_core.config import BackboneConfig, Stage1Config
from gkd_core.models import Backbone, Teacher, build_backbone, build_teacher
from gkd_core.stages.stage2 import Stage2Config

NUM_CLASSES = 19  # Cityscapes train ids
TEACHER_SEED = 1234  # random teacher weights, the same in every run of a resume check


# ----------------------------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class ModelSpec:
    """A timm model name and the overrides that shrink it (smoke mode)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)

    def config(self, img_size: int) -> BackboneConfig:
        return BackboneConfig(self.name, img_size=img_size, overrides=dict(self.overrides))


@dataclass(frozen=True)
class Plan:
    """Every size the check uses; :func:`full_plan` is the paper's, :func:`smoke_plan` a toy."""

    smoke: bool
    label: str = "full sizes"
    teacher: ModelSpec = ModelSpec("vit_base_patch14_dinov2")
    student: ModelSpec = ModelSpec("deit_small_patch16_224")
    cnn: ModelSpec = ModelSpec("resnet50")
    s1b_size: int = 512
    s1b_batch: int = 32
    s1a_size: int = 224
    s1a_batch: int = 128
    s1a_patch: int = 14
    s2_size: int = 512
    s2_batch: int = Stage2Config().batch_size
    eval_hw: tuple[int, int] = (512, 1024)
    eval_window: int = 512
    eval_images: int = 16
    resume_size: int = 224
    resume_batch: int = 16
    resume_steps: int = 6
    resume_stop: int = 3
    # bench/dataloader.py's sets, smaller than its own defaults (the section must fit in about a minute)
    pipeline: Workload = field(default_factory=lambda: Workload(images_1a=64, images_gtav=8, passes=1))
    matmul_sizes: tuple[int, ...] = (8192, 16384)
    matmul_repeats: int = 20
    warmup: int = 5
    repeats: int = 20
    timing_cap_s: float = 45.0
    threads: int = 0  # torch CPU threads (0: torch's default)
    tests_timeout_s: float = 240.0
    compile_backend: str = "inductor"
    precision: str = "bf16"  # autocast of every trained or evaluated model (the teacher runs bf16 always)
    head_options: dict[str, dict[str, Any]] = field(default_factory=dict)


def full_plan() -> Plan:
    return Plan(smoke=False)


def cpu_plan() -> Plan:
    """bench/stage1_step.py's sizes (ViT-S/14 teacher, ViT-Ti/16 student, 128 px, batch 16), fp32, inductor.

    What a CPU can time in minutes; its option verdicts are the CPU's training defaults.
    """
    return Plan(
        smoke=False,
        label="CPU sizes: ViT-S/14 teacher, ViT-Ti/16 student, 128 px",
        teacher=ModelSpec("vit_small_patch14_dinov2"),
        student=ModelSpec("vit_tiny_patch16_224"),
        cnn=ModelSpec("resnet50"),
        s1b_size=128,
        s1b_batch=16,
        s1a_size=112,
        s1a_batch=16,
        s2_size=128,
        s2_batch=4,
        eval_hw=(128, 256),
        eval_window=128,
        eval_images=4,
        resume_size=64,
        resume_batch=4,
        pipeline=Workload(images_1a=32, images_gtav=4, passes=1),
        matmul_sizes=(2048,),
        matmul_repeats=5,
        warmup=2,
        repeats=10,
        timing_cap_s=90.0,
        precision="fp32",  # bf16 matmuls are emulated on most CPUs
        head_options={"mask2former": {"num_queries": 20, "num_layers": 3, "encoder_layers": 1}},
    )


def smoke_plan(device: torch.device | None = None) -> Plan:
    """Toy sizes; on a CPU in fp32 with one thread (bf16 only on a GPU)."""
    on_gpu = device is not None and device.type == "cuda"
    tiny_vit = {"depth": 2, "num_heads": 2}
    return Plan(
        smoke=True,
        label="smoke: toy sizes",
        teacher=ModelSpec("vit_base_patch14_dinov2", {**tiny_vit, "embed_dim": 48}),
        student=ModelSpec("deit_small_patch16_224", {**tiny_vit, "embed_dim": 32}),
        cnn=ModelSpec("resnet50", {"layers": [1, 1, 1, 1]}),
        s1b_size=64,
        s1b_batch=4,
        s1a_size=56,
        s1a_batch=4,
        s2_size=64,
        s2_batch=2,
        eval_hw=(64, 128),
        eval_window=64,
        eval_images=2,
        resume_size=64,
        resume_batch=2,
        resume_steps=4,
        resume_stop=2,
        pipeline=Workload(
            images_1a=4,
            images_gtav=2,
            passes=1,
            imagenet_hw=(48, 64),
            gtav_hw=(64, 128),
            size_1a=32,
            size_1b=64,
            batch_1a=2,
            batch_gtav=2,
        ),
        matmul_sizes=(512,),
        matmul_repeats=3,
        warmup=1,
        repeats=2,
        timing_cap_s=5.0,
        threads=0 if on_gpu else 1,  # toy ops on shared CI cores: one thread avoids spin-waiting on busy siblings
        tests_timeout_s=120.0,
        compile_backend="eager",  # dynamo tracing without code generation: seconds, not minutes, on a CPU
        precision="bf16" if on_gpu else "fp32",  # bf16 convolutions are emulated on most CPUs: 10x slower
        head_options={"mask2former": {"num_queries": 8, "num_layers": 2, "encoder_layers": 1, "num_points": 256}},
    )


@dataclass
class Context:
    """What every section sees: the plan, the device, the deadline and figures other sections left."""

    plan: Plan
    device: torch.device
    deadline: float
    out: Path
    peak_flops: float | None = None
    batches: dict[str, int] = field(default_factory=dict)  # batch each stage-1 size ran at (after OOM halving)
    stage1_images_per_s: dict[str, float] = field(default_factory=dict)  # "1a"/"1b" as measured here

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


# ---------------------------------------------------------------------------------------- measuring


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    """Seconds one call takes: CUDA events around it on a GPU (after a sync), the wall clock elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end)) / 1e3
    tick = time.perf_counter()
    fn()
    return time.perf_counter() - tick


def time_calls(
    ctx: Context, calls: dict[str, Callable[[], Any]], *, warmup: int | None = None
) -> dict[str, dict[str, float]]:
    """Median and minimum ms per call, calls interleaved so drift hits all alike; stops early at the deadline."""
    plan = ctx.plan
    for _ in range(plan.warmup if warmup is None else warmup):
        for fn in calls.values():
            fn()
    stop_at = min(ctx.deadline, time.monotonic() + plan.timing_cap_s)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(plan.repeats):
        for name, fn in calls.items():
            samples[name].append(timed(fn, ctx.device))
        if i >= 1 and time.monotonic() > stop_at:
            break
    return {
        name: {"median_ms": statistics.median(s) * 1e3, "min_ms": min(s) * 1e3, "samples": len(s)}
        for name, s in samples.items()
    }


def peak_memory_gib(fn: Callable[[], Any], device: torch.device) -> float | None:
    """``torch.cuda.max_memory_allocated`` over one call, in GiB (None off CUDA)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def halving_batch(rec: dict[str, Any], batch: int, run: Callable[[int], Any], device: torch.device) -> Any:
    """``run(batch)``; on out-of-memory record it, halve the batch and retry (down to 1)."""
    while True:
        try:
            return run(batch)
        except Exception as exc:
            if not is_oom(exc) or batch <= 1:
                raise
            first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            rec.setdefault("oom_retries", []).append({"batch": batch, "error": first_line})
            failed = batch
        free_memory(device)  # outside the except block: the traceback no longer holds the tensors
        batch = failed // 2


def mfu(flops: float, seconds: float, ctx: Context) -> float | None:
    return flops / seconds / ctx.peak_flops if ctx.peak_flops and seconds > 0 else None


def faster_of(figures: dict[str, float]) -> tuple[str, float]:
    """The name with the smallest time and how many times faster it is than the slowest."""
    best = min(figures, key=lambda k: figures[k])
    return best, max(figures.values()) / figures[best]


def under(context: Callable[[], contextlib.AbstractContextManager[Any]], fn: Callable[[], Any]) -> Callable[[], None]:
    """``fn`` run inside a fresh ``context()`` each call."""

    def call() -> None:
        with context():
            fn()

    return call


# ------------------------------------------------------------------------------------------- models


def build(spec: ModelSpec, img_size: int, device: torch.device) -> Backbone:
    return build_backbone(spec.config(img_size)).to(device)


def stage1_pair(ctx: Context, size: int, student_patch: int | None = None) -> tuple[Backbone, Teacher]:
    """Student at ``size`` (kernel resized to ``student_patch``) and a bf16 teacher aligned to it, on the device."""
    plan = ctx.plan
    student = build_backbone(plan.student.config(size))
    if student_patch:
        student.set_geometry(img_size=size, patch_size=student_patch)
    torch.manual_seed(TEACHER_SEED)
    teacher = build_teacher(plan.teacher.config(size), student, precision="bf16")
    return student.to(ctx.device), teacher.to(ctx.device)


M = TypeVar("M", bound=nn.Module)


def to_channels_last(module: M) -> M:
    """``module`` with its 4-d parameters and buffers in channels-last memory format."""
    return module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def random_images(batch: int, size: int | tuple[int, int], device: torch.device) -> torch.Tensor:
    h, w = (size, size) if isinstance(size, int) else size
    return torch.rand(batch, 3, h, w, device=device)


def label_maps(batch: int, size: int, device: torch.device, blocks: int = 4) -> torch.Tensor:
    coarse = torch.randint(0, NUM_CLASSES, (batch, 1, blocks, blocks), device=device).float()
    return nn.functional.interpolate(coarse, size=(size, size), mode="nearest")[:, 0].long()


def stage1_cfg(batch: int, size: int, patch: int | None = None, **kw: Any) -> Stage1Config:
    return Stage1Config(steps=1000, batch_size=batch, image_size=size, student_patch_size=patch, **kw)


@dataclass(frozen=True)
class Section:
    name: str
    run: Callable[[Context, dict[str, Any]], str]
    min_seconds: float  # skipped when less of the budget is left (full sizes)

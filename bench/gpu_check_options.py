"""Training options of bench/gpu_check.py, each measured on and off where it applies.

fused AdamW, the SDPA backend (flash / efficient / cudnn / math / torch's choice / timm's eager
attention), channels-last for a CNN student and torch.compile of the stage-1 task. Each section
records ``decisions``: the median ms of every setting and which one is fastest; the defaults are
decided from these figures, not here.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import functools
import os
import shutil
from collections.abc import Callable
from typing import Any

import torch

from bench.gpu_check_plan import (
    TEACHER_SEED,
    Context,
    build,
    faster_of,
    free_memory,
    label_maps,
    peak_memory_gib,
    random_images,
    stage1_cfg,
    stage1_pair,
    time_calls,
    timed,
    to_channels_last,
    under,
)
from bench.gpu_check_sections import _stage2_step
from bench.stage1_step import make_steps
from gkd_core.config import Stage1Config
from gkd_core.engine.speed import NOISE, attention
from gkd_core.models import Backbone, Teacher, build_backbone, build_teacher
from gkd_core.stages.stage2 import Stage2Config


def _s1b_setup(ctx: Context) -> tuple[Backbone, Teacher, torch.Tensor, Stage1Config]:
    """The step-1b models and a batch for option comparisons (at the batch stage1_1b ran at)."""
    plan = ctx.plan
    batch = ctx.batches.get("1b", plan.s1b_batch)
    student, teacher = stage1_pair(ctx, plan.s1b_size)
    return student, teacher, random_images(batch, plan.s1b_size, ctx.device), stage1_cfg(batch, plan.s1b_size)


def _decide(
    rec: dict[str, Any], option: str, where: str, times: dict[str, dict[str, float]], **extra: Any
) -> str:
    """Record which setting was fastest (median ms) and return the summary line for it.

    ``gkd_core.engine.speed.decide`` turns these records into the training defaults; ``extra``
    (compile's first-call seconds) travels with the record."""
    medians = {name: t["median_ms"] for name, t in times.items()}
    best, speedup = faster_of(medians)
    figures = ", ".join(f"{name} {ms:.1f} ms" for name, ms in medians.items())
    slowest = max(medians, key=lambda k: medians[k])
    verdict = (
        f"{best} is {speedup:.2f}x faster"
        if len(medians) == 2
        else f"{best} fastest ({speedup:.2f}x faster than the slowest, {slowest})"
    )
    if speedup < 1 + NOISE:
        verdict += f" (within {NOISE:.0%}: no clear winner)"
    line = f"{option} ({where}): {figures} -> {verdict}"
    rec.setdefault("decisions", []).append(
        {
            "option": option,
            "where": where,
            "median_ms": medians,
            "min_ms": {name: t["min_ms"] for name, t in times.items()},
            "faster": best,
            "speedup_over_slowest": speedup,
            "clear": speedup >= 1 + NOISE,
            "line": line,
            **extra,
        }
    )
    return line


def section_option_fused_adamw(ctx: Context, rec: dict[str, Any]) -> str:
    """Step 1b with gkd_core's AdamW (foreach on CUDA) against ``AdamW(fused=True)``."""
    student, teacher, images, cfg = _s1b_setup(ctx)
    calls = {
        "off": make_steps(student, teacher, cfg, images, precision=ctx.plan.precision)["full"],
        "on": make_steps(student, teacher, cfg, images, precision=ctx.plan.precision, fused=True)["full"],
    }
    rec["batch"] = images.shape[0]
    rec["off_means"] = "gkd_core's adamw_cosine: torch.optim.AdamW with its default (foreach on CUDA)"
    return _decide(rec, "fused AdamW", f"stage-1 1b step x{images.shape[0]}", time_calls(ctx, calls))


def section_option_sdpa(ctx: Context, rec: dict[str, Any]) -> str:
    """Step 1b under each SDPA backend (sdpa_kernel) and with timm's fused attention off (eager softmax)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    student, teacher, images, cfg = _s1b_setup(ctx)
    pair = torch.nn.ModuleList([student, teacher])
    attn = [m for m in pair.modules() if hasattr(m, "fused_attn")]
    rec["attention_modules"] = len(attn)
    rec["fused_attn_on"] = sum(bool(m.fused_attn) for m in attn)
    step = make_steps(student, teacher, cfg, images, precision=ctx.plan.precision)["full"]
    backends = {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    variants: dict[str, Callable[[], None]] = {
        name: under(functools.partial(sdpa_kernel, b), step) for name, b in backends.items()
    }
    variants["default"] = under(contextlib.nullcontext, step)
    variants["timm_eager"] = under(lambda: attention(pair, "eager"), step)
    # Last: some torch releases' cuDNN attention faulted (an illegal memory access ends the CUDA context),
    # and whatever runs after such a fault fails too.
    variants["cudnn"] = under(functools.partial(sdpa_kernel, SDPBackend.CUDNN_ATTENTION), step)
    usable, unsupported = {}, {}
    for name, call in variants.items():  # one try each: a backend this device lacks is recorded, not fatal
        try:
            call()
            usable[name] = call
        except (RuntimeError, NotImplementedError, ValueError) as exc:  # no kernel here, or out of memory (math)
            unsupported[name] = (str(exc).splitlines() or [""])[0][:300]
        free_memory(ctx.device)
    rec["unsupported"] = unsupported
    rec["peak_memory_gib"] = {name: peak_memory_gib(call, ctx.device) for name, call in usable.items()}
    if not usable:
        raise RuntimeError("no attention variant ran")
    times = time_calls(ctx, usable)
    line = _decide(rec, "SDPA backend", f"stage-1 1b step x{images.shape[0]}", times)
    if "flash" in times:
        flash = times["flash"]["median_ms"]
        rec["flash_speedup_over"] = {n: t["median_ms"] / flash for n, t in times.items() if n != "flash"}
    return line + (f"; unsupported here: {', '.join(unsupported)}" if unsupported else "")


def section_option_channels_last(ctx: Context, rec: dict[str, Any]) -> str:
    """A ResNet-50 student, contiguous against channels-last: stage-1 step (no masked view) and stage-2 step."""
    plan, dev = ctx.plan, ctx.device
    cl = torch.channels_last
    size, batch = plan.s1b_size, ctx.batches.get("1b", plan.s1b_batch)
    student = build_backbone(plan.cnn.config(size))
    torch.manual_seed(TEACHER_SEED)
    teacher = build_teacher(plan.teacher.config(size), student, precision="bf16").to(dev)
    student = student.to(dev)
    student_cl = to_channels_last(copy.deepcopy(student))
    cfg = stage1_cfg(batch, size, mask_probability=0.0)  # a CNN takes no masked view
    images = random_images(batch, size, dev)
    calls = {
        "off": make_steps(student, teacher, cfg, images, precision=ctx.plan.precision)["full"],
        "on": make_steps(student_cl, teacher, cfg, images.contiguous(memory_format=cl), precision=ctx.plan.precision)[
            "full"
        ],
    }
    rec.update(student=plan.cnn.name, stage1_batch=batch, alignment=teacher.alignment)
    first = _decide(rec, "channels-last", f"{plan.cnn.name} stage-1 step x{batch}", time_calls(ctx, calls))
    del calls, student, student_cl, teacher, images
    free_memory(dev)

    size2, batch2 = plan.s2_size, plan.s2_batch
    backbone = build(plan.cnn, size2, dev)
    head = Stage2Config().head
    data = {"image": random_images(batch2, size2, dev), "mask": label_maps(batch2, size2, dev)}
    data_cl = {"image": data["image"].contiguous(memory_format=cl), "mask": data["mask"]}
    calls = {
        "off": _stage2_step(backbone, head, data, dev, plan.precision),
        "on": _stage2_step(to_channels_last(copy.deepcopy(backbone)), head, data_cl, dev, plan.precision, True),
    }
    rec.update(stage2_head=head, stage2_batch=batch2)
    second = _decide(rec, "channels-last", f"{plan.cnn.name} stage-2 {head} step x{batch2}", time_calls(ctx, calls))
    return f"{first}; {second}"


def section_option_compile(ctx: Context, rec: dict[str, Any]) -> str:
    """Step 1b with the task under ``torch.compile`` against eager; compile time reported apart."""
    backend = ctx.plan.compile_backend
    compilers = [c for c in (os.environ.get("CC"), "cc", "gcc", "clang") if c and shutil.which(c)]
    rec["c_compiler"] = compilers[0] if compilers else None
    if backend == "inductor" and not compilers:  # inductor builds C/C++ (and Triton launchers) on first call
        raise RuntimeError("no C compiler on PATH (cc, gcc, clang or $CC): torch.compile's inductor needs one")
    student, teacher, images, cfg = _s1b_setup(ctx)
    eager = make_steps(student, teacher, cfg, images, precision=ctx.plan.precision)["full"]
    compiled = make_steps(
        student, teacher, cfg, images, precision=ctx.plan.precision, compile_options={"backend": backend}
    )["full"]
    rec.update(backend=backend, batch=images.shape[0])
    breaks_before = _graph_breaks()
    rec["first_call_s"] = timed(compiled, ctx.device)  # tracing + code generation
    rec["second_call_s"] = timed(compiled, ctx.device)  # a recompile would show here
    breaks = _graph_breaks() - breaks_before
    rec["graph_breaks"] = {reason[:200]: n for reason, n in breaks.items()}
    line = _decide(
        rec,
        "torch.compile",
        f"stage-1 1b step x{images.shape[0]}",
        time_calls(ctx, {"off": eager, "on": compiled}),
        first_call_s=rec["first_call_s"],
        backend=backend,
    )
    return f"{line}; first call {rec['first_call_s']:.1f} s (backend {backend})"


def _graph_breaks() -> collections.Counter[str]:
    """Dynamo's graph-break reasons so far (a private counter; empty where it moved)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return collections.Counter()
    return collections.Counter(dict(counters.get("graph_break", {})))

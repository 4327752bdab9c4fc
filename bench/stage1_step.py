"""Benchmark one GKD stage-1 step on CPU against the bare minimum it cannot avoid.

Setup (issue 3): ViT-Tiny/16 student, ViT-S/14 DINOv2-style teacher (random weights, kernel resized
to 16 so both give an 8x8 grid), 128 px, batch 16. Prints medians of ``--steps`` (default 10)
interleaved steps, and the minima:

* the full stage-1 step time (teacher forward, student clean + masked views, three QSD heads,
  backward, AdamW step);
* the bare minimum: teacher forward + ONE student forward/backward (with one linear projection to
  the teacher width) + AdamW step;
* their ratio (goal: at most 1.3; the student runs twice per step by design);
* the achieved fraction of the CPU's fp32 matmul peak, measured here with a large matmul; FLOPs
  of the step are counted with ``torch.utils.flop_counter.FlopCounterMode``.

Run: ``.venv/bin/python bench/stage1_step.py [--teacher-precision fp32|bf16] [--steps N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import gkd_core  # noqa: F401  (torchvision shim before timm)

# isort: split
from gkd_core.config import BackboneConfig, Stage1Config
from gkd_core.engine import adamw_cosine, param_groups
from gkd_core.engine.optim import CosineFactor
from gkd_core.engine.trainer import autocast_context
from gkd_core.models import Backbone, Teacher, build_backbone, build_teacher
from gkd_core.stages import Stage1Task


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 matmul throughput in FLOP/s over a few repeats of an n x n product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - tick)
    return 2 * n**3 / best


def time_interleaved(steps: dict[str, Callable[[], None]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Seconds per call of each step, measured alternately so background load hits all of them alike."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            tick = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - tick)
    return times


def count_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call (forward and backward) as counted by FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def stage1_optimizer(
    params: torch.nn.Module | list[torch.nn.Parameter], cfg: Stage1Config, fused: bool | None = None
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """Stage 1's AdamW + cosine (``adamw_cosine``); ``fused`` given: the same groups and schedule with
    ``torch.optim.AdamW(fused=...)`` (None keeps gkd_core's default implementation)."""
    if fused is None:
        return adamw_cosine(params, cfg.effective_lr, cfg.weight_decay, steps=cfg.steps, min_lr=cfg.min_lr)
    lr = cfg.effective_lr
    opt = torch.optim.AdamW(param_groups(params, cfg.weight_decay), lr=lr, fused=fused)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, CosineFactor(cfg.steps, 0, min(cfg.min_lr, lr) / lr))


def make_steps(
    student: Backbone,
    teacher: Teacher,
    cfg: Stage1Config,
    images: torch.Tensor,
    *,
    precision: str = "fp32",
    fused: bool | None = None,
    compile_options: dict[str, Any] | None = None,
) -> dict[str, Callable[[], None]]:
    """The full stage-1 step and the bare minimum over the same images, as zero-argument callables.

    * ``full``: ``Stage1Task`` (teacher forward, student clean + masked views, three token heads,
      the three losses), backward, AdamW step, scheduler step.
    * ``bare``: the least any distillation step of these shapes must do: teacher forward + ONE
      student forward/backward with one linear projection to the teacher width (MSE on the patch
      tokens) + AdamW step; no masked view, no QSD heads.

    Both share ``student`` (already on ``images.device``); ``precision`` is the student's autocast
    (the teacher follows ``teacher.precision``), ``fused`` picks the AdamW implementation
    (see :func:`stage1_optimizer`); ``compile_options`` given, the full step runs the task through
    ``torch.compile(task, **compile_options)``. The task and projection are moved to ``images.device``.
    """
    device = images.device
    task = Stage1Task(student, teacher, cfg).to(device).train()
    opt, sched = stage1_optimizer(task, cfg, fused)
    batch = {"image": images}
    forward: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] = (
        task if compile_options is None else torch.compile(task, **compile_options)
    )

    def full_step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast_context(device, precision):
            loss = forward(batch)["loss"]
        loss.backward()
        opt.step()
        sched.step()

    proj = torch.nn.Linear(student.embed_dim, teacher.embed_dim).to(device)
    bare_params = [*student.parameters(), *proj.parameters()]
    bare_opt = torch.optim.AdamW(bare_params, lr=1e-4, weight_decay=0.05, fused=fused)

    def bare_step() -> None:
        bare_opt.zero_grad(set_to_none=True)
        target = teacher(images).patches
        with autocast_context(device, precision):
            pred = proj(student.forward_tokens(images).patches)
        loss = F.mse_loss(pred.float(), target)
        loss.backward()
        bare_opt.step()

    return {"full": full_step, "bare": bare_step}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per variant (issue 15: medians of >= 10)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--teacher-precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    size, batch = args.size, args.batch
    student = build_backbone(BackboneConfig("vit_tiny_patch16_224", img_size=size))
    teacher = build_teacher(BackboneConfig("vit_small_patch14_dinov2", img_size=size), student)
    teacher.precision = args.teacher_precision
    cfg = Stage1Config(steps=1000, batch_size=batch, image_size=size, teacher_precision=args.teacher_precision)
    images = torch.rand(batch, 3, size, size)
    steps = make_steps(student, teacher, cfg, images)
    full_step = steps["full"]

    peak = matmul_peak()
    times = time_interleaved(steps, args.steps, args.warmup)
    peak = max(peak, matmul_peak())
    # Medians are the headline (issue 15); the minimum, the least disturbed by other processes, is shown too.
    t_full, t_bare = statistics.median(times["full"]), statistics.median(times["bare"])
    min_full, min_bare = min(times["full"]), min(times["bare"])
    flops = count_flops(full_step)
    print(f"threads {torch.get_num_threads()}, {size} px, batch {batch}, teacher {args.teacher_precision}, "
          f"medians of {args.steps} steps")  # fmt: skip
    print(f"token grids: {teacher.alignment}")
    print(f"fp32 matmul peak:      {peak / 1e9:8.1f} GFLOP/s")
    print(
        f"stage-1 step:          {t_full * 1e3:8.1f} ms  ({batch / t_full:.1f} images/s; min {min_full * 1e3:.1f} ms)"
    )
    print(f"bare minimum step:     {t_bare * 1e3:8.1f} ms  (min {min_bare * 1e3:.1f} ms)")
    print(f"ratio stage-1 / bare:  {t_full / t_bare:8.2f}  (goal <= 1.3; ratio of minima {min_full / min_bare:.2f})")
    print(f"stage-1 step FLOPs:    {flops / 1e9:8.1f} GFLOP -> {flops / t_full / 1e9:.1f} GFLOP/s")
    print(
        f"fraction of fp32 peak: {flops / t_full / peak:8.1%}  "
        f"(goal >= 70%; at the minimum {flops / min_full / peak:.1%})"
    )


if __name__ == "__main__":
    main()

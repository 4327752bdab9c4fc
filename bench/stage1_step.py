"""Benchmark one GKD stage-1 step on CPU against the bare minimum it cannot avoid.

Setup (issue 3): ViT-Tiny/16 student, ViT-S/14 DINOv2-style teacher (random weights, kernel resized
to 16 so both give an 8x8 grid), 128 px, batch 16. Prints:

* the full stage-1 step time (teacher forward, student clean + masked views, three QSD heads,
  backward, AdamW step);
* the bare minimum: teacher forward + ONE student forward/backward (with one linear projection to
  the teacher width) + AdamW step;
* their ratio (must stay under 1.6: the student runs twice per step by design);
* the achieved fraction of the CPU's fp32 matmul peak, measured here with a large matmul; FLOPs
  of the step are counted with ``torch.utils.flop_counter.FlopCounterMode``.

Run: ``.venv/bin/python bench/stage1_step.py [--teacher-precision fp32|bf16] [--steps N]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import gkd_core  # noqa: F401  (torchvision shim before timm)

# isort: split
from gkd_core.config import BackboneConfig, Stage1Config
from gkd_core.engine import adamw_cosine
from gkd_core.models import build_backbone, build_teacher
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=8)
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

    task = Stage1Task(student, teacher, cfg).train()
    opt, sched = adamw_cosine(task, cfg.effective_lr, cfg.weight_decay, steps=cfg.steps, min_lr=cfg.min_lr)

    def full_step() -> None:
        opt.zero_grad(set_to_none=True)
        task({"image": images})["loss"].backward()
        opt.step()
        sched.step()

    proj = torch.nn.Linear(student.embed_dim, teacher.embed_dim)
    bare_opt = torch.optim.AdamW([*student.parameters(), *proj.parameters()], lr=1e-4, weight_decay=0.05)

    def bare_step() -> None:
        bare_opt.zero_grad(set_to_none=True)
        target = teacher(images).patches
        loss = F.mse_loss(proj(student.forward_tokens(images).patches), target)
        loss.backward()
        bare_opt.step()

    peak = matmul_peak()
    times = time_interleaved({"full": full_step, "bare": bare_step}, args.steps, args.warmup)
    peak = max(peak, matmul_peak())
    # The minimum is the least disturbed by other processes on a shared machine; medians are shown too.
    t_full, t_bare = min(times["full"]), min(times["bare"])
    med_full, med_bare = statistics.median(times["full"]), statistics.median(times["bare"])
    flops = count_flops(full_step)
    print(f"threads {torch.get_num_threads()}, {size} px, batch {batch}, teacher {args.teacher_precision}")
    print(f"token grids: {teacher.alignment}")
    print(f"fp32 matmul peak:      {peak / 1e9:8.1f} GFLOP/s")
    print(
        f"stage-1 step:          {t_full * 1e3:8.1f} ms  ({batch / t_full:.1f} images/s; "
        f"median {med_full * 1e3:.1f} ms)"
    )
    print(f"bare minimum step:     {t_bare * 1e3:8.1f} ms  (median {med_bare * 1e3:.1f} ms)")
    print(
        f"ratio stage-1 / bare:  {t_full / t_bare:8.2f}  (must stay < 1.6; "
        f"ratio of medians {med_full / med_bare:.2f})"
    )
    print(f"stage-1 step FLOPs:    {flops / 1e9:8.1f} GFLOP -> {flops / t_full / 1e9:.1f} GFLOP/s")
    print(f"fraction of fp32 peak: {flops / t_full / peak:8.1%}")


if __name__ == "__main__":
    main()

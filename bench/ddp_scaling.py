"""Data-parallel scaling of a GKD stage-1 step: steps/s and images/s on 1 rank and on N ranks.

Each measurement is a real ``gkd_core.engine.fit`` run of the stage-1 task (teacher forward, student
clean + masked views, three QSD heads, DDP gradient all-reduce, the per-step stop agreement and the
averaged metrics) started by torchrun (``--standalone --nproc-per-node K``), so it measures what a job
with ``resources.gpus: K`` runs. Weak scaling: every rank keeps the same batch, so the global batch
grows with K (``--fixed-global`` keeps the global batch instead). Efficiency is
``images/s(N) / (N * images/s(1))``.

Where CUDA is available every rank takes one GPU and the ranks talk NCCL (bf16 autocast, a ViT-S/16
student and a ViT-B/14 teacher at 224 px). Elsewhere each rank is a CPU process talking gloo and gets
cores / N threads, in the 1-rank run too, so that as with GPUs every rank has the same hardware and
the efficiency measures what data parallelism costs (all-reduce, stop agreement, metric averaging).

Run: ``python -m bench.ddp_scaling --ranks 2 [--steps 20] [--warmup 3] [--batch-per-rank B]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# (student, teacher, image size, batch per rank, precision) per device kind.
PRESETS: dict[str, dict[str, Any]] = {
    "cuda": {
        "student": ("vit_small_patch16_224", {}),
        "teacher": ("vit_base_patch14_dinov2", {}),
        "image_size": 224,
        "batch": 64,
        "precision": "bf16",
    },
    "cpu": {
        "student": ("vit_tiny_patch16_224", {"depth": 4}),
        "teacher": ("vit_small_patch14_dinov2", {"depth": 4}),
        "image_size": 64,
        "batch": 8,
        "precision": "fp32",
    },
}


class _Images:
    """Random images (no decoding cost: this measures training, not the loader)."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Any]:
        import torch

        return {"image": torch.rand(3, self.size, self.size)}


def worker(args: argparse.Namespace) -> None:
    """One rank of one measurement (under torchrun); rank 0 writes the figures to ``args.out``."""
    import torch

    import gkd_core  # noqa: F401  (torchvision shim before timm)
    from gkd_core.config import BackboneConfig, Stage1Config
    from gkd_core.engine import Callbacks, MetricRow, StepBatches, adamw_cosine, distributed, fit
    from gkd_core.models import build_backbone, build_teacher
    from gkd_core.stages import Stage1Task

    kind = "cuda" if torch.cuda.is_available() else "cpu"
    device = distributed.setup(device_kind=kind, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    preset = PRESETS[kind]
    world = distributed.world_size()
    per_rank = args.batch_per_rank or preset["batch"]
    global_batch = per_rank * (args.ranks if args.fixed_global else world)
    size = preset["image_size"]
    torch.manual_seed(0)
    s_name, s_over = preset["student"]
    t_name, t_over = preset["teacher"]
    student = build_backbone(BackboneConfig(s_name, img_size=size, overrides=s_over))
    teacher = build_teacher(BackboneConfig(t_name, img_size=size, overrides=t_over), student)
    steps = args.warmup + args.steps
    cfg = Stage1Config(steps=steps, batch_size=global_batch, image_size=size, teacher_precision=preset["precision"],
                       checkpoint_every=0)  # fmt: skip
    task = Stage1Task(student, teacher, cfg)
    optimizer, scheduler = adamw_cosine(task, 1e-4, steps=steps)
    batches = StepBatches(_Images(global_batch * steps, size), global_batch, seed=0, num_workers=0)

    class Clock(Callbacks):
        def __init__(self) -> None:
            self.times: dict[int, float] = {}

        def on_metrics(self, rows: list[MetricRow]) -> None:
            self.times[rows[0].step] = time.perf_counter()  # after the step's metrics were synchronised

    clock = Clock()
    fit(task, optimizer, scheduler, batches, steps=steps, stage="bench", checkpoint_dir=None, callbacks=clock,
        device=device, precision=preset["precision"], seed=0)  # fmt: skip
    if distributed.is_main():
        seconds = clock.times[steps] - clock.times[args.warmup]
        figures = {
            "ranks": world, "device": kind, "backend": distributed.backend_for(kind) if world > 1 else "-",
            "threads_per_rank": torch.get_num_threads() if kind == "cpu" else None,
            "global_batch": global_batch, "image_size": size, "student": s_name, "teacher": t_name,
            "steps": args.steps, "seconds": seconds, "steps_per_s": args.steps / seconds,
            "images_per_s": args.steps * global_batch / seconds,
        }  # fmt: skip
        Path(args.out).write_text(json.dumps(figures))
    distributed.teardown()


def measure(ranks: int, args: argparse.Namespace, out: Path, cuda: bool) -> dict[str, Any]:
    """One torchrun launch of ``ranks`` ranks; returns rank 0's figures."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    if not cuda:  # every rank of both runs gets the share of the cores a rank of the N-rank run has
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.ranks))
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}",
        "-m", "bench.ddp_scaling", "--worker", "--out", str(out), "--ranks", str(args.ranks),
        "--steps", str(args.steps), "--warmup", str(args.warmup), "--batch-per-rank", str(args.batch_per_rank),
    ] + (["--fixed-global"] if args.fixed_global else [])  # fmt: skip
    subprocess.run(command, cwd=REPO, env=env, check=True)
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def _has_cuda() -> bool:
    code = "import torch; print(torch.cuda.is_available())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip() == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2, help="N: compared with 1 rank")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--batch-per-rank", type=int, default=0, help="0: the preset's (8 on CPU, 64 on GPU)")
    parser.add_argument("--fixed-global", action="store_true", help="keep the global batch (strong scaling)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        cuda = _has_cuda()
        rows = [measure(k, args, Path(tmp) / f"{k}.json", cuda) for k in (1, args.ranks)]
    one, many = rows
    efficiency = many["images_per_s"] / (args.ranks * one["images_per_s"])
    lines = [
        f"stage-1 step, {one['student']} <- {one['teacher']}, {one['image_size']} px, {one['device']}"
        f" ({'weak' if not args.fixed_global else 'strong'} scaling)",
        f"{'ranks':>5} {'backend':>7} {'threads/rank':>12} {'global batch':>12} {'steps/s':>8} {'images/s':>9}",
    ]
    for row in rows:
        threads = row["threads_per_rank"] if row["threads_per_rank"] is not None else "-"
        lines.append(f"{row['ranks']:>5} {row['backend']:>7} {threads!s:>12} {row['global_batch']:>12} "
                     f"{row['steps_per_s']:>8.3f} {row['images_per_s']:>9.2f}")  # fmt: skip
    lines.append(f"scaling efficiency at {args.ranks} ranks: {efficiency:.1%} (images/s of N ranks / N x 1 rank)")
    sys.stdout.write("\n".join(lines) + "\n")
    if args.json:
        args.json.write_text(json.dumps({"runs": rows, "efficiency": efficiency}, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark one stage-2 step per decode head (linear, FPN, Mask2Former) on a frozen ViT student.

A step is what ``train_segmentation`` runs: frozen-encoder features (no grad), the head's own loss
(pixel CE, or Mask2Former's matched set loss), backward, gradient clipping where the head asks for
it, AdamW + poly step. Random weights and random block-shaped label maps (19 classes, as
Cityscapes). Prints per head the median step time over ``--steps`` timed steps after warm-up
(heads interleaved, so background load hits all alike), the FLOPs of a step (counted by
``FlopCounterMode``: matmuls, convolutions and attention; grid sampling and the matcher are not
counted), and the achieved fraction of the matmul peak measured in the same run.

CPU (the default; issue 14): ``.venv/bin/python -m bench.stage2_heads`` (128 px, batch 4, 2 threads).
GPU: ``from bench.stage2_heads import main; main(["--device", "cuda", "--precision", "bf16",
"--size", "512"])``, or call :func:`run` directly; both return the measured rows.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

import gkd_core  # noqa: F401  (torchvision shim before timm)

# isort: split
from gkd_core.config import BackboneConfig
from gkd_core.engine.optim import adamw_poly
from gkd_core.engine.trainer import autocast_context
from gkd_core.models.backbone import build_backbone
from gkd_core.stages.stage2 import SegmentationTask, Stage2Config, build_segmentation_model, optimizer_groups

HEADS = ("linear", "fpn", "mask2former")
# Stage2Config's default width for the dense heads; the paper's (mmseg's) 256 for Mask2Former.
CHANNELS = {"linear": 128, "fpn": 128, "mask2former": 256}
NUM_CLASSES = 19


@dataclass(frozen=True)
class HeadTiming:
    """One head's measured stage-2 step."""

    head: str
    channels: int
    median_s: float
    min_s: float
    flops: int
    images_per_s: float
    fraction_of_peak: float


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best matmul throughput (FLOP/s) of an n x n product on ``device`` in ``dtype``."""
    if device.type == "cuda":
        n = max(n, 8192)  # a GPU needs a big product to reach its peak
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        tick = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - tick)
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def label_maps(batch: int, size: int, generator: torch.Generator, blocks: int = 4) -> torch.Tensor:
    """Label maps of ``blocks x blocks`` random-class squares (about a dozen classes per image)."""
    coarse = torch.randint(0, NUM_CLASSES, (batch, 1, blocks, blocks), generator=generator).float()
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest")[:, 0].long()


def _make_step(
    head: str,
    backbone: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    device: torch.device,
    precision: str,
    options: dict[str, Any],
) -> tuple[Callable[[], None], int]:
    cfg = Stage2Config(head=head, head_channels=CHANNELS[head], crop_size=max(32, batch["image"].shape[-1]))
    model = build_segmentation_model(backbone, head, NUM_CLASSES, channels=cfg.head_channels, head_options=options).to(
        device
    )
    task = SegmentationTask(model).train()
    model.backbone.eval()
    optimizer, scheduler = adamw_poly(optimizer_groups(model, cfg), cfg.lr, cfg.weight_decay, steps=cfg.steps)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    clip = cfg.clip_norm()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, precision):
            loss = task(batch)["loss"]
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        scheduler.step()

    return step, cfg.head_channels


def run(
    *,
    heads: Sequence[str] = HEADS,
    size: int = 128,
    batch: int = 4,
    steps: int = 10,
    warmup: int = 2,
    device: str = "cpu",
    precision: str = "fp32",
    model: str = "deit_small_patch16_224",
    overrides: dict[str, Any] | None = None,
    head_options: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Measure every head's stage-2 step; returns the peak, the setup and one :class:`HeadTiming` per head.

    ``overrides`` shrink the timm student (tests); ``head_options`` map a head name to its
    constructor options (default: the published ones).
    """
    dev = torch.device(device)
    torch.manual_seed(seed)
    backbone = build_backbone(BackboneConfig(model, img_size=size, overrides=dict(overrides or {}))).to(dev)
    g = torch.Generator().manual_seed(seed)
    data = {"image": torch.rand(batch, 3, size, size, generator=g).to(dev), "mask": label_maps(batch, size, g).to(dev)}
    steps_by_head = {}
    channels = {}
    for head in heads:
        torch.manual_seed(seed)
        options = dict((head_options or {}).get(head, {}))
        steps_by_head[head], channels[head] = _make_step(head, backbone, data, dev, precision, options)
    peak_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    peak = matmul_peak(dev, peak_dtype)
    times: dict[str, list[float]] = {h: [] for h in heads}
    for i in range(warmup + steps):
        for head, step in steps_by_head.items():
            _sync(dev)
            tick = time.perf_counter()
            step()
            _sync(dev)
            if i >= warmup:
                times[head].append(time.perf_counter() - tick)
    peak = max(peak, matmul_peak(dev, peak_dtype))
    rows = []
    for head, step in steps_by_head.items():
        with FlopCounterMode(display=False) as counter:
            step()
        flops = int(counter.get_total_flops())
        median = statistics.median(times[head])
        rows.append(
            HeadTiming(head, channels[head], median, min(times[head]), flops, batch / median, flops / median / peak)
        )
    return {
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "model": model,
        "size": size,
        "batch": batch,
        "precision": precision,
        "steps": steps,
        "peak_flops": peak,
        "rows": rows,
    }


def report(result: dict[str, Any]) -> str:
    """The printed table."""
    dtype = "bf16" if result["precision"] == "bf16" else "fp32"
    lines = [
        f"{result['device']}, {result['threads']} threads, {result['model']} (random weights, frozen), "
        f"{result['size']} px, batch {result['batch']}, {result['precision']}, {NUM_CLASSES} classes",
        f"{dtype} matmul peak (same run): {result['peak_flops'] / 1e9:.1f} GFLOP/s",
        f"{'head':<12} {'ch':>4} {'median ms':>10} {'min ms':>9} {'img/s':>7} {'GFLOP/step':>11} {'of peak':>8}",
    ]
    for r in result["rows"]:
        lines.append(
            f"{r.head:<12} {r.channels:>4} {r.median_s * 1e3:>10.1f} {r.min_s * 1e3:>9.1f} {r.images_per_s:>7.2f} "
            f"{r.flops / 1e9:>11.2f} {r.fraction_of_peak:>8.1%}"
        )
    lines.append(f"(median of {result['steps']} timed steps per head after warm-up, heads interleaved)")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run, print the table; returns :func:`run`'s result."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--heads", nargs="+", choices=HEADS, default=list(HEADS))
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--model", default="deit_small_patch16_224")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(
        heads=args.heads,
        size=args.size,
        batch=args.batch,
        steps=args.steps,
        warmup=args.warmup,
        device=args.device,
        precision=args.precision,
        model=args.model,
    )
    print(report(result))
    return result


if __name__ == "__main__":
    main()

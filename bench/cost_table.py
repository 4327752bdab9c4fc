"""Measure the cost table the API estimates jobs with: ``python -m bench.cost_table`` rewrites gkd_catalog/costs.json.

The API image has no torch, so it cannot build a model at request time; this command builds every model of the
curated zoo (service/zoo.py) and every stage-2 head on the meta device (no weights, no memory, seconds per
model), counts FLOPs with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention; 2 per
multiply-add, the same counter bench/gpu_check.py measures achieved FLOP/s with) and the bytes autograd saves
for backward (``saved_tensors_hooks``, fp32), and fits them:

* a backbone's forward, per image, as ``c0 + c1*x + c2*x^2`` with ``x`` the cells of its input grid
  (``(side/cell)^2``; the cell is the patch of a ViT, 32 px otherwise). For a ViT with a fixed number of prefix
  tokens that form is exact (linear layers grow with tokens, attention with tokens squared); the fit uses
  three sizes and tests/bench/test_cost_table.py checks the real model at a fourth.
* a stage-2 head's forward, per image, on the tensor basis ``{1, x} x {1, K} x {1, C, C^2}`` (x = pixels / 32^2,
  K classes, C head channels): every term of a decode head is a product of at most pixels, classes and two
  channel widths, so twelve measurements pin it; the same basis holds the head's parameter count. A head
  depends on the backbone only through the widths of the four levels it reads, so heads are keyed by those.

The JSON is committed; tests/bench/test_cost_table.py fails when the zoo or the heads change without it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import gkd_core  # noqa: F401  (torchvision shim before timm)
from gkd_catalog.costs import HEAD_BASIS, HEAD_CELL, TABLE_PATH, dims_key, head_basis
from gkd_core.config import BackboneConfig
from gkd_core.models import Backbone, build_backbone
from gkd_core.models.heads import HEADS, build_head
from gkd_core.stages.stage2 import STRIDES, level_dims
from service.zoo import CURATED

FIT_SIDES = (7, 14, 21)
"""Grid sides (in cells) the backbone polynomial is fitted at; the test checks a fourth side (28)."""
HEAD_SIDES = (7, 14)
"""Image sides in HEAD_CELL units (32 px) the heads are measured at; the test checks 21."""
HEAD_CLASSES = (10, 20)
HEAD_CHANNELS = (64, 128, 256)
NON_VIT_CELL = 32


def measure(fn: Callable[[], object]) -> tuple[int, int]:
    """(FLOPs as FlopCounterMode counts them, bytes of the tensors autograd keeps for backward) of one call."""
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        if not isinstance(t, torch.nn.Parameter):
            saved += t.numel() * t.element_size()
        return t

    with FlopCounterMode(display=False) as counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return int(counter.get_total_flops()), saved


def build(name: str, size: int) -> Backbone:
    """A zoo model as gkd_core builds it, at ``size`` px, on the meta device."""
    with torch.device("meta"):
        return build_backbone(BackboneConfig(name, img_size=size))


def cell_of(backbone: Backbone) -> int:
    return int(backbone.patch_size) if backbone.is_vit else NON_VIT_CELL


def fit_quadratic(xs: Sequence[float], ys: Sequence[float]) -> list[float]:
    """``[c0, c1, c2]`` through three points exactly."""
    matrix = np.array([[1.0, x, x * x] for x in xs])
    return [float(c) for c in np.linalg.solve(matrix, np.array(ys, dtype=float))]


def backbone_point(name: str, side: int, cell: int) -> tuple[Backbone, int, int]:
    """The model at ``side`` cells: (model, forward FLOPs per image, saved bytes per image)."""
    size = side * cell
    backbone = build(name, size).train()
    images = torch.empty(1, 3, size, size, device="meta")
    levels = backbone.default_level_indices()
    flops, saved = measure(lambda: backbone.forward_levels(images, levels))
    return backbone, flops, saved


def model_entry(name: str) -> dict[str, Any]:
    """One backbone's row: kind, cell, widths, parameters, level widths, fitted forward FLOPs and saved bytes."""
    cell = cell_of(build(name, 224))
    points = [backbone_point(name, side, cell) for side in FIT_SIDES]
    backbone = points[0][0]
    xs = [float(side * side) for side in FIT_SIDES]
    entry: dict[str, Any] = {
        "vit": bool(backbone.is_vit),
        "cell": cell,
        "embed_dim": int(backbone.embed_dim),
        "params": sum(p.numel() for p in backbone.parameters()),
        "level_dims": level_dims(backbone, backbone.default_level_indices(), probe_size=FIT_SIDES[0] * cell),
        "flops": fit_quadratic(xs, [p[1] for p in points]),
        "saved_bytes": fit_quadratic(xs, [p[2] for p in points]),
    }
    if backbone.is_vit:
        # A resized patch kernel (teacher aligned to a patch-16 student, step 1a's student_patch_size) changes
        # only the patch embedding: 2 * 3 * E FLOPs per token per kernel pixel.
        entry["patch_embed_flops_per_kernel_px"] = 6 * int(backbone.embed_dim)
    return entry


def head_point(head: str, dims: Sequence[int], side: int, classes: int, channels: int) -> tuple[int, int, int]:
    """(forward FLOPs, saved bytes, parameters) of ``head`` per ``side`` x ``side`` image on level widths ``dims``.

    The head sees what SegmentationModel.features gives it: four maps at strides 4-32 of the image; the
    frozen encoder's maps carry no gradient, so only the head's own activations are saved.
    """
    with torch.device("meta"):
        module = build_head(head, list(dims), classes, channels=channels)
    module.train()
    maps = [torch.empty(1, d, side // s, side // s, device="meta") for d, s in zip(dims, STRIDES, strict=True)]
    flops, saved = measure(lambda: module(maps, (side, side)))
    return flops, saved, sum(p.numel() for p in module.parameters())


def head_entry(head: str, dims: Sequence[int]) -> dict[str, list[float]]:
    """Twelve measurements of ``head`` on level widths ``dims`` solved for the coefficients of HEAD_BASIS."""
    rows, values = [], []
    for side, classes, channels in itertools.product(HEAD_SIDES, HEAD_CLASSES, HEAD_CHANNELS):
        rows.append(head_basis(float(side * side), classes, channels))
        values.append(head_point(head, dims, side * HEAD_CELL, classes, channels))
    matrix = np.array(rows)
    return {
        key: [float(c) for c in np.linalg.solve(matrix, np.array([v[i] for v in values], dtype=float))]
        for i, key in enumerate(("flops", "saved_bytes", "params"))
    }


def build_table(models: Sequence[str], heads: Sequence[str], log: Callable[[str], None] = lambda _: None) -> dict:
    """The whole table as JSON-ready data: heads are keyed by the level widths they read (``"384,384,384,384"``)."""
    import timm

    table: dict[str, Any] = {
        "generated_by": "python -m bench.cost_table",
        "torch": torch.__version__.split("+")[0],
        "timm": timm.__version__,
        "counter": "torch.utils.flop_counter.FlopCounterMode: FLOPs of matmuls, convolutions and attention, "
        "2 per multiply-add; saved bytes: tensors autograd keeps for backward, fp32",
        "head_cell": HEAD_CELL,
        "head_basis": list(HEAD_BASIS),
        "models": {},
        "heads": {head: {} for head in heads},
    }
    for name in models:
        entry = table["models"][name] = model_entry(name)
        key = dims_key(entry["level_dims"])
        for head in heads:
            if key not in table["heads"][head]:
                table["heads"][head][key] = head_entry(head, entry["level_dims"])
        log(f"{name}: {entry['flops'][1] / 1e6:.1f} MFLOPs per cell, levels {key}")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=TABLE_PATH, help=f"default: {TABLE_PATH}")
    parser.add_argument("--models", nargs="+", default=[m.name for m in CURATED], help="default: the curated zoo")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    table = build_table(args.models, list(HEADS), log=lambda line: print(line, file=sys.stderr, flush=True))
    args.out.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

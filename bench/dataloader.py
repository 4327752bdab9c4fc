"""Input pipeline throughput per CPU core, before and after preparation, and the cores one GPU needs (issue 15).

Three training inputs, each written as files into a temp dir and read the way a job reads them
(``open_dataset`` + the stage's transform + ``StepBatches`` collation), in ONE process with one torch
thread, so images per second of CPU time is images per second per core:

* ``1a``: ImageNet-size JPEGs (500x375, quality 90) through the step-1a transform at 224 px
  (RandomResizedCrop 0.08-1, flip, timm RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25);
* ``1b``: GTAV-size PNGs (1914x1052) through the step-1b transform at 512 px;
* ``stage2``: the same PNGs with label PNGs through the stage-2 transform (base 512, scale 0.5-2.0,
  512 crop with cat_max_ratio 0.75, flip, photometric distortion).

Each is measured reading the files and reading the prepared store (``gkd_core.data.prepared``, at the
stage's stored short side); stage 1 also from a store at the training size itself (the trade-off the
default does not make: crops are then upsampled more), stage 2 also with the photometric distortion
deferred to the batch, as it runs on a CUDA device (there it costs the loader nothing). CPU time is the process's own
(``time.process_time``), so other load on the machine inflates wall time but not the per-core rate.

Cores per GPU = the GPU's stage-1 images/s / images/s per core. The GPU rate is gpu_check's measured
``stage1_1a`` / ``stage1_1b`` images/s (``--gpu-check gpu_check.json``), else a paper-size estimate:
FLOPs per image of the stage-1 step for the paper's pair (DINOv2 ViT-B/14 teacher forward + DeiT-S/16
student forward and backward on the clean view and on the masked half of the batch, counted with
``FlopCounterMode`` on the meta device) at ``--mfu`` (default 0.4) of an H100 SXM's dense bf16 peak
(989 TFLOP/s, NVIDIA's H100 datasheet). Stage 2 is set against the 512 px stage-1 rate.

Run: ``PYTHONPATH=. .venv/bin/python bench/dataloader.py [--images-1a 128] [--images-gtav 16] [--out f.json]``.
gpu_check's ``input_pipeline`` section runs the same measurement (``measure_sets``) on a smaller
:class:`Workload` and sets it against the stage-1 rates it measured itself on that machine.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

import gkd_core  # noqa: F401
from gkd_core.data import SegTrainTransform, Stage1Transform, open_dataset
from gkd_core.data.photometric import DeferredPhotometric
from gkd_core.data.prepared import prepare, stage_short_side
from gkd_core.data.synthetic_scene import CLASSES
from gkd_core.engine import StepBatches

IMAGENET_HW = (375, 500)
GTAV_HW = (1052, 1914)
H100_BF16_DENSE = 989e12


def _smooth_noisy(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Random smooth colours plus pixel noise: compresses like a photo, not like flat colour or pure noise."""
    coarse = rng.integers(0, 256, (max(1, height // 16), max(1, width // 16), 3), dtype=np.uint8)
    img = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(img, np.int16) + rng.integers(-8, 9, (height, width, 3)), 0, 255).astype(np.uint8)


def write_pngs(root: Path, n: int, height: int, width: int, seed: int = 0) -> None:
    """``n`` image/mask PNG pairs and classes.json in the generic folder layout."""
    rng = np.random.default_rng(seed)
    for split_dir in ("images/train", "masks/train"):
        (root / split_dir).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(_smooth_noisy(rng, height, width)).save(root / "images/train" / f"{i:04d}.png")
        labels = rng.integers(0, len(CLASSES), (max(1, height // 32), max(1, width // 32)), dtype=np.uint8)
        mask = Image.fromarray(labels).resize((width, height), Image.Resampling.NEAREST)
        mask.save(root / "masks/train" / f"{i:04d}.png")
    (root / "classes.json").write_text(json.dumps({"names": list(CLASSES), "ignore_index": 255}))


def write_jpegs(root: Path, n: int, height: int, width: int, seed: int = 1) -> None:
    """``n`` JPEGs (quality 90) in the ``images`` layout, split "train"."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(_smooth_noisy(rng, height, width)).save(root / "train" / f"{i:05d}.jpg", quality=90)


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {k: torch.stack(v) if isinstance(v[0], torch.Tensor) else v for k, v in _columns(items).items()}


def _columns(items: list[dict[str, Any]]) -> dict[str, list[Any]]:
    return {k: [it[k] for it in items] for k in items[0]}


def per_core(dataset: Any, batch: int, passes: int) -> dict[str, float]:
    """Images per CPU second (one process, one thread, no loader workers) and per wall second."""
    batch = min(batch, len(dataset))
    source = StepBatches(dataset, batch, seed=0, num_workers=0, collate_fn=_collate)
    steps = passes * source.steps_per_epoch
    next(source(0))  # warm-up: imports, first decode
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in islice(source(0), steps):
        pass
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    images = steps * batch
    return {"images": images, "per_core": images / cpu, "wall": images / wall}


def paper_stage1_rates(mfu: float) -> dict[str, dict[str, float]]:
    """Paper-size GPU images/s of stage 1 at 224 (1a) and 512 px (1b): FLOPs counted on meta tensors."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench.gpu_check_plan import full_plan
    from gkd_core.models import build_backbone, build_teacher

    plan, out = full_plan(), {}
    for key, size, patch in (("1a", 224, 14), ("1b", 512, None)):
        with torch.device("meta"):
            student = build_backbone(plan.student.config(size))
            if patch:
                student.set_geometry(img_size=size, patch_size=patch)
            teacher = build_teacher(plan.teacher.config(size), student, precision="fp32")
            images = torch.empty(1, 3, size, size)
            with FlopCounterMode(display=False) as counter:
                teacher(images)
            teacher_flops = counter.get_total_flops()
            with FlopCounterMode(display=False) as counter:
                student.forward_tokens(images)
            student_flops = counter.get_total_flops()
        # Forward + backward is 3 forwards; the masked view adds the student again for half the batch.
        flops = teacher_flops + 3 * 1.5 * student_flops
        out[key] = {"gflop_per_image": flops / 1e9, "images_per_s": mfu * H100_BF16_DENSE / flops}
    return out


def measured_stage1_rates(path: Path) -> dict[str, dict[str, float]]:
    sections = json.loads(path.read_text())["sections"]
    return {
        key: {"images_per_s": float(sections[name]["images_per_s"])}
        for key, name in (("1a", "stage1_1a"), ("1b", "stage1_1b"))
        if sections.get(name, {}).get("images_per_s")
    }


def _case(name: str, dataset: Any, batch: int, passes: int, log: Callable[[str], None]) -> dict[str, float]:
    result = per_core(dataset, batch, passes)
    log(f"  {name:<44} {result['per_core']:8.1f} img/s per core   ({result['wall']:.1f} img/s wall)")
    return result


@dataclass(frozen=True)
class Workload:
    """How many images of which sizes each case reads; the defaults are the standalone benchmark's."""

    images_1a: int = 128
    images_gtav: int = 16
    passes: int = 2
    imagenet_hw: tuple[int, int] = IMAGENET_HW
    gtav_hw: tuple[int, int] = GTAV_HW
    size_1a: int = 224
    size_1b: int = 512  # also stage 2's base size and crop
    batch_1a: int = 16
    batch_gtav: int = 4


def measure_sets(
    root: Path, workload: Workload, rates: dict[str, dict[str, float]], log: Callable[[str], None] = print
) -> dict[str, dict[str, Any]]:
    """Per-core images/s of every case (files, prepared, ...) and the cores one GPU at ``rates`` needs.

    Writes the sets under ``root``; runs in this process with one torch thread (restored afterwards).
    """
    w, threads = workload, torch.get_num_threads()
    torch.set_num_threads(1)  # one core: the per-core rate
    try:
        tick = time.perf_counter()
        write_jpegs(root / "imagenet", w.images_1a, *w.imagenet_hw)
        write_pngs(root / "gtav", w.images_gtav, *w.gtav_hw)
        mib = {d: sum(p.stat().st_size for p in (root / d).rglob("*.*g")) / 2**20 for d in ("imagenet", "gtav")}
        log(f"wrote {w.images_1a} JPEGs {w.imagenet_hw[1]}x{w.imagenet_hw[0]} ({mib['imagenet']:.1f} MiB) and "
            f"{w.images_gtav} PNG pairs {w.gtav_hw[1]}x{w.gtav_hw[0]} ({mib['gtav']:.1f} MiB) in "
            f"{time.perf_counter() - tick:.0f} s; one process, one torch thread")  # fmt: skip
        return _measure_cases(root, w, rates, log)
    finally:
        torch.set_num_threads(threads)


def _measure_cases(
    root: Path, w: Workload, rates: dict[str, dict[str, float]], log: Callable[[str], None]
) -> dict[str, dict[str, Any]]:
    cache, sets = root / "prepared", {}
    crop2 = {"crop": w.size_1b, "base_size": w.size_1b, "scale": (0.5, 2.0), "cat_max_ratio": 0.75}
    plans: list[tuple[str, Callable[..., Any], int | None, int, int]] = [
        ("1a", lambda **kw: open_dataset(root / "imagenet", "images", "train", images_only=True,
                                         transform=Stage1Transform(w.size_1a), **kw),
         stage_short_side("stage1", image_size=w.size_1a), w.size_1a, w.batch_1a),
        ("1b", lambda **kw: open_dataset(root / "gtav", "folder", "train", images_only=True,
                                         transform=Stage1Transform(w.size_1b), **kw),
         stage_short_side("stage1", image_size=w.size_1b), w.size_1b, w.batch_gtav),
        ("stage2", lambda photometric=True: open_dataset(
            root / "gtav", "folder", "train", transform=SegTrainTransform(photometric=photometric, **crop2)),
         stage_short_side("stage2", image_size=w.size_1b, base_size=w.size_1b, max_scale=2.0), w.size_1b,
         w.batch_gtav),
    ]  # fmt: skip
    for key, make, short, size, batch in plans:
        log(f"{key} (stored short side {short}):")
        rec: dict[str, Any] = {"short_side": short, "batch": batch}
        rec["files"] = _case("files (decode every read)", make(), batch, w.passes, log)
        tick = time.process_time()
        ready = prepare(make(), cache, short, num_workers=0)
        rec["prepare_cpu_s_per_image"] = (time.process_time() - tick) / len(ready)
        rec["prepared"] = _case("prepared store", ready, batch, w.passes, log)
        if key != "stage2":  # the trade-off: stored at the training size itself (small crops upsampled more)
            small = prepare(make(), cache, size, num_workers=0)
            rec["prepared_at_training_size"] = _case(
                f"prepared at short side {size} (not the default)", small, batch, w.passes, log
            )
        else:
            deferred = prepare(make(photometric=False), cache, short, num_workers=0)
            rec["prepared_gpu_photometric"] = _case(
                "prepared, photometric on the GPU (CUDA path)", DeferredPhotometric(deferred), batch, w.passes, log
            )
        gpu = rates["1a" if key == "1a" else "1b"]["images_per_s"]
        rec["gpu_images_per_s"] = gpu
        paths = {k: v for k, v in rec.items() if isinstance(v, dict) and "per_core" in v}
        rec["cores_per_gpu"] = {k: gpu / v["per_core"] for k, v in paths.items()}
        rec["best_default_cores_per_gpu"] = min(
            v for k, v in rec["cores_per_gpu"].items() if k != "prepared_at_training_size"
        )
        log(f"  prepare once: {rec['prepare_cpu_s_per_image'] * 1e3:.0f} ms CPU per image; GPU at "
            f"{gpu:.0f} img/s needs {gpu / rec['files']['per_core']:.0f} cores reading files, "
            f"{rec['best_default_cores_per_gpu']:.0f} with the best default path")  # fmt: skip
        sets[key] = rec
    return sets


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images-1a", type=int, default=128, help="ImageNet-size JPEGs")
    parser.add_argument("--images-gtav", type=int, default=16, help="GTAV-size PNG pairs")
    parser.add_argument("--passes", type=int, default=2, help="passes over each set per measurement")
    parser.add_argument("--gpu-check", type=Path, help="gpu_check.json with measured stage-1 rates")
    parser.add_argument("--mfu", type=float, default=0.4, help="MFU of the paper-size estimate")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    rates = measured_stage1_rates(args.gpu_check) if args.gpu_check else {}
    source = "gpu_check (measured)" if len(rates) == 2 else f"paper-size estimate (MFU {args.mfu:.0%} of H100 bf16)"
    if len(rates) < 2:
        rates = paper_stage1_rates(args.mfu)
    workload = Workload(images_1a=args.images_1a, images_gtav=args.images_gtav, passes=args.passes)
    with tempfile.TemporaryDirectory(prefix="gkd-bench-") as tmp:
        sets = measure_sets(Path(tmp), workload, rates, log=lambda line: print(line, flush=True))
    print(f"GPU stage-1 rate: {source}: " + ", ".join(f"{k} {v['images_per_s']:.0f} img/s" for k, v in rates.items()))
    result: dict[str, Any] = {"gpu_rate_source": source, "gpu_rates": rates, "sets": sets}
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

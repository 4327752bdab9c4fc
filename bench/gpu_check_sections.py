"""The checks and measurements of bench/gpu_check.py, one function per section.

A section is ``fn(ctx, rec) -> summary``: it writes its figures into ``rec`` (kept even when it
fails half-way) and returns the one line the final table shows. Options (fused AdamW, SDPA
backends, channels-last, torch.compile) are in bench/gpu_check_options.py.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import torch

from bench.gpu_check_plan import (
    NUM_CLASSES,
    TEACHER_SEED,
    Context,
    build,
    free_memory,
    halving_batch,
    label_maps,
    mfu,
    peak_memory_gib,
    random_images,
    stage1_cfg,
    stage1_pair,
    time_calls,
    timed,
    to_channels_last,
)
from bench.stage1_step import count_flops, make_steps, stage1_optimizer
from gkd_core.engine import RecordingCallbacks, StepBatches, StopRequested, adamw_poly, fit
from gkd_core.engine.trainer import autocast_context
from gkd_core.models import Backbone, build_backbone, build_teacher
from gkd_core.models.heads import HEADS
from gkd_core.stages import Stage1Task
from gkd_core.stages.stage2 import (
    SegmentationTask,
    Stage2Config,
    build_segmentation_model,
    evaluate_segmentation,
    optimizer_groups,
)

REPO = Path(__file__).resolve().parents[1]
# Never to be imported by the check (the GPU host has none of them).
FORBIDDEN_MODULES = (
    "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "psycopg", "celery", "kombu",
    "boto3", "botocore", "pydantic_settings", "httpx", "typer", "onnxscript",
    "service", "api", "worker", "gkd_client", "gkd_cli", "migrations",
)  # fmt: skip
GKD_CORE_ALLOWED_IMPORTS = frozenset({"torch", "timm", "numpy", "PIL", "safetensors", "gkd_core", "gkd_catalog"})
_GPU_MARK = re.compile(r"mark\.gpu\b")


def section_gpu_tests(ctx: Context, rec: dict[str, Any]) -> str:
    """The gpu-marked gkd_core tests in a subprocess; only tests/gkd_core conftests load (--confcutdir)."""
    root = REPO / "tests" / "gkd_core"
    files = sorted(str(p.relative_to(REPO)) for p in root.rglob("test_*.py") if _GPU_MARK.search(p.read_text()))
    rec["files"] = files
    if not files:
        rec.update(collected=0, passed=0, failed=0, errors=0, skipped=0)
        return "no gpu-marked test found under tests/gkd_core"
    run_them = ctx.device.type == "cuda" and torch.cuda.is_available()
    xml_path = ctx.out / "gpu_tests.xml"
    cmd = [sys.executable, "-m", "pytest", *files, "-m", "gpu", "--confcutdir", str(root), "-p", "no:cacheprovider"]
    cmd += ["-q", "-o", "addopts=", "--strict-markers"]  # pyproject's addopts deselect gpu tests
    cmd += ["--junitxml", str(xml_path)] if run_them else ["--collect-only"]
    rec["mode"] = "run" if run_them else "collect-only (no CUDA here)"
    rec["command"] = " ".join(cmd)
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    timeout = max(20.0, min(ctx.plan.tests_timeout_s, ctx.remaining()))
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    output = proc.stdout + proc.stderr
    rec["returncode"] = proc.returncode
    rec["output_tail"] = output[-4000:]
    if not run_them:
        collected = sum(1 for line in proc.stdout.splitlines() if "::" in line)
        rec.update(collected=collected, passed=0, failed=0, errors=0, skipped=0)
        if proc.returncode != 0:
            raise RuntimeError(f"collecting the gpu tests failed (pytest exit {proc.returncode})")
        return f"{collected} gpu tests collected in {len(files)} file(s) (not run: no CUDA)"
    rec.update(junit_counts(xml_path))
    line = f"{rec['passed']} passed, {rec['failed']} failed, {rec['errors']} errors, {rec['skipped']} skipped"
    if proc.returncode != 0:
        raise RuntimeError(f"gpu tests: {line} (pytest exit {proc.returncode})")
    return line


def junit_counts(xml_path: Path) -> dict[str, Any]:
    """Counts and per-test outcomes of a pytest JUnit report."""
    suite = ET.parse(xml_path).getroot()
    if suite.tag != "testsuite":  # pytest writes <testsuites><testsuite .../></testsuites>
        found = suite.find("testsuite")
        suite = found if found is not None else suite
    counts = {k: int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    outcomes = {"failure": "failed", "error": "error", "skipped": "skipped"}
    return {
        "collected": counts["tests"],
        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
        "tests": {
            f"{case.get('classname')}::{case.get('name')}": next(
                (outcomes[c.tag] for c in case if c.tag in outcomes), "passed"
            )
            for case in suite.iter("testcase")
        },
    }


def section_matmul_peak(ctx: Context, rec: dict[str, Any]) -> str:
    """Best n x n matmul throughput in the plan's precision (bf16; the denominator of every MFU figure)."""
    dev, plan = ctx.device, ctx.plan
    dtype = torch.bfloat16 if plan.precision == "bf16" else torch.float32
    by_size = {}
    for n in plan.matmul_sizes:
        a = torch.randn(n, n, device=dev, dtype=dtype)
        b = torch.randn(n, n, device=dev, dtype=dtype)
        for _ in range(3):
            torch.mm(a, b)
        times = [timed(functools.partial(torch.mm, a, b), dev) for _ in range(plan.matmul_repeats)]
        by_size[str(n)] = {
            "best_tflops": 2 * n**3 / min(times) / 1e12,
            "median_tflops": 2 * n**3 / statistics.median(times) / 1e12,
        }
        del a, b
    best = max(v["best_tflops"] for v in by_size.values())
    timer = "cuda events" if dev.type == "cuda" else "wall clock"
    rec.update(dtype=plan.precision, by_size=by_size, peak_tflops=best, timer=timer)
    ctx.peak_flops = best * 1e12
    return f"{plan.precision} peak {best:.3g} TFLOP/s (n = {', '.join(by_size)}, {timer})"


def _stage1(ctx: Context, rec: dict[str, Any], key: str, size: int, batch: int, patch: int | None) -> str:
    student, teacher = stage1_pair(ctx, size, patch)
    rec.update(
        teacher=ctx.plan.teacher.name, student=ctx.plan.student.name, image_size=size,
        precision=f"{ctx.plan.precision} autocast",
        student_patch=student.patch_size, teacher_patch=teacher.backbone.patch_size,
        grid=list(student.grid_for(size)), alignment=teacher.alignment,
    )  # fmt: skip

    def run(b: int) -> dict[str, Any]:
        images = random_images(b, size, ctx.device)
        steps = make_steps(student, teacher, stage1_cfg(b, size, patch), images, precision=ctx.plan.precision)
        times = time_calls(ctx, steps)
        flops = {name: count_flops(fn) for name, fn in steps.items()}
        memory = {name: peak_memory_gib(fn, ctx.device) for name, fn in steps.items()}
        full_s, bare_s = times["full"]["median_ms"] / 1e3, times["bare"]["median_ms"] / 1e3
        return {
            "batch": b,
            "times": times,
            "ms_per_step": full_s * 1e3,
            "images_per_s": b / full_s,
            "bare_ms_per_step": bare_s * 1e3,
            "ratio_to_bare": full_s / bare_s,
            "flops_per_step": flops["full"],
            "bare_flops_per_step": flops["bare"],
            "achieved_tflops": flops["full"] / full_s / 1e12,
            "mfu": mfu(flops["full"], full_s, ctx),
            "bare_mfu": mfu(flops["bare"], bare_s, ctx),
            "peak_memory_gib": memory["full"],
            "bare_peak_memory_gib": memory["bare"],
        }

    rec.update(halving_batch(rec, batch, run, ctx.device))
    ctx.batches[key] = rec["batch"]
    ctx.stage1_images_per_s[key] = rec["images_per_s"]
    mem = f", peak mem {rec['peak_memory_gib']:.1f} GiB" if rec["peak_memory_gib"] is not None else ""
    util = f", MFU {rec['mfu']:.1%}" if rec["mfu"] is not None else ""
    return (
        f"{size} px x{rec['batch']}: {rec['ms_per_step']:.1f} ms ({rec['images_per_s']:.1f} img/s), "
        f"bare {rec['bare_ms_per_step']:.1f} ms, ratio {rec['ratio_to_bare']:.2f}{util}{mem}"
    )


def section_stage1_1b(ctx: Context, rec: dict[str, Any]) -> str:
    """Step 1b: 512 px, 32 images, the teacher's kernel resized 14 -> 16 (32x32 grid)."""
    return _stage1(ctx, rec, "1b", ctx.plan.s1b_size, ctx.plan.s1b_batch, None)


def section_stage1_1a(ctx: Context, rec: dict[str, Any]) -> str:
    """Step 1a: 224 px, 128 images, the student's kernel resized 16 -> 14, the teacher native (16x16 grid)."""
    return _stage1(ctx, rec, "1a", ctx.plan.s1a_size, ctx.plan.s1a_batch, ctx.plan.s1a_patch)


def _stage2_runner() -> Any:
    """bench/stage2_heads.py's module when the tree has it, else None."""
    try:
        return importlib.import_module("bench.stage2_heads")
    except ModuleNotFoundError as exc:
        if exc.name != "bench.stage2_heads":
            raise
        return None


def _stage2_step(
    backbone: Backbone,
    head: str,
    batch: dict[str, torch.Tensor],
    device: torch.device,
    precision: str,
    channels_last: bool = False,
) -> Callable[[], None]:
    """One stage-2 training step (frozen encoder, head's loss, AdamW + poly) as ``train_segmentation`` runs it."""
    cfg = Stage2Config(head=head, crop_size=max(32, int(batch["image"].shape[-1])))
    model = build_segmentation_model(backbone, head, NUM_CLASSES, channels=cfg.head_channels).to(device)
    if channels_last:
        model = to_channels_last(model)
    task = SegmentationTask(model).train()
    optimizer, scheduler = adamw_poly(optimizer_groups(model, cfg), cfg.lr, cfg.weight_decay, steps=cfg.steps)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_context(device, precision):
            loss = task(batch)["loss"]
        loss.backward()
        optimizer.step()
        scheduler.step()

    return step


def section_stage2_heads(ctx: Context, rec: dict[str, Any]) -> str:
    """A stage-2 step per registered head on the frozen student at 512 px (bf16 autocast)."""
    plan, dev = ctx.plan, ctx.device
    runner = _stage2_runner()
    rec.update(
        heads=list(HEADS),
        image_size=plan.s2_size,
        student=plan.student.name,
        precision=f"{ctx.plan.precision} autocast",
    )
    rec["via"] = "bench/stage2_heads.py run()" if runner else "bench/gpu_check.py (no bench/stage2_heads.py here)"
    backbone = None if runner else build(plan.student, plan.s2_size, dev)
    per_head: dict[str, dict[str, Any]] = {}
    rec["per_head"] = per_head

    def one(head: str, b: int) -> dict[str, Any]:
        if runner is not None:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            result = runner.run(
                heads=[head], size=plan.s2_size, batch=b, steps=plan.repeats, warmup=plan.warmup, device=str(dev),
                precision=plan.precision, model=plan.student.name, overrides=dict(plan.student.overrides),
                head_options=plan.head_options,
            )  # fmt: skip
            row = result["rows"][0]
            seconds, flops = float(row.median_s), int(row.flops)
            memory = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None
            extra = {"runner_peak_tflops": result["peak_flops"] / 1e12, "memory_note": "includes run()'s matmul probe"}
        else:
            assert backbone is not None
            data = {"image": random_images(b, plan.s2_size, dev), "mask": label_maps(b, plan.s2_size, dev)}
            step = _stage2_step(backbone, head, data, dev, plan.precision)
            seconds = time_calls(ctx, {head: step})[head]["median_ms"] / 1e3
            flops, memory, extra = count_flops(step), peak_memory_gib(step, dev), {}
        return {"batch": b, "ms_per_step": seconds * 1e3, "images_per_s": b / seconds, "flops_per_step": flops,
                "mfu": mfu(flops, seconds, ctx), "peak_memory_gib": memory, **extra}  # fmt: skip

    failed = []
    for head in HEADS:
        sub: dict[str, Any] = {}
        try:
            sub.update(halving_batch(sub, plan.s2_batch, functools.partial(one, head), dev))
            sub["status"] = "ok"
        except Exception as exc:
            sub.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            failed.append(head)
        per_head[head] = sub
        free_memory(dev)
    if failed:
        raise RuntimeError(f"stage-2 step failed for head(s) {failed} (the other heads are in per_head)")
    return "; ".join(
        f"{h} {r['ms_per_step']:.1f} ms ({r['images_per_s']:.1f} img/s"
        + (f", MFU {r['mfu']:.1%})" if r["mfu"] is not None else ")")
        for h, r in per_head.items()
    )


def section_sliding_window_eval(ctx: Context, rec: dict[str, Any]) -> str:
    """``evaluate_segmentation`` (sliding window, bf16) on random 1024x512 images: images/s."""
    plan, dev = ctx.plan, ctx.device
    cfg = Stage2Config(crop_size=plan.eval_window)
    backbone = build(plan.student, plan.eval_window, dev)
    model = build_segmentation_model(backbone, cfg.head, NUM_CLASSES, channels=cfg.head_channels).to(dev).eval()
    windows = [0]
    model.register_forward_hook(lambda *_: windows.__setitem__(0, windows[0] + 1))
    h, w = plan.eval_hw
    data = [
        {"image": torch.rand(3, h, w), "mask": torch.randint(0, NUM_CLASSES, (h, w))} for _ in range(plan.eval_images)
    ]

    def evaluate(items: list[dict[str, torch.Tensor]]) -> None:
        evaluate_segmentation(
            model,
            cast(Any, items),
            NUM_CLASSES,
            window=cfg.window,
            stride=cfg.stride,
            device=dev,
            precision=plan.precision,
        )

    evaluate(data[:1])  # warm-up
    windows[0] = 0
    seconds = timed(lambda: evaluate(data), dev)
    rec.update(
        head=cfg.head, image_hw=[h, w], window=cfg.window, stride=cfg.stride, images=len(data), seconds_total=seconds,
        windows_per_image=windows[0] / len(data), images_per_s=len(data) / seconds,
        windows_per_s=windows[0] / seconds, precision=f"{ctx.plan.precision} autocast",
        batch="1 image, as evaluate_segmentation runs",
    )  # fmt: skip
    return (
        f"{w}x{h}, window {cfg.window} stride {cfg.stride} ({rec['windows_per_image']:.0f} windows/image): "
        f"{rec['images_per_s']:.1f} img/s"
    )


class _RandomImages:
    """Fixed random images (one generator per index), the same in every run."""

    def __init__(self, count: int, size: int) -> None:
        self.count, self.size = count, size

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(index)
        return {"image": torch.rand(3, self.size, self.size, generator=gen)}


def section_checkpoint_resume(ctx: Context, rec: dict[str, Any]) -> str:
    """Stage-1 ``fit`` on the device: stop after a checkpoint, resume in fresh objects, compare the next losses."""
    plan, dev = ctx.plan, ctx.device
    size, batch, steps, stop = plan.resume_size, plan.resume_batch, plan.resume_steps, plan.resume_stop

    def run(ckpt: Path, callbacks: RecordingCallbacks, init_seed: int) -> None:
        torch.manual_seed(init_seed)
        student = build_backbone(plan.student.config(size))
        torch.manual_seed(TEACHER_SEED)  # the teacher is not checkpointed: the same random weights every run
        teacher = build_teacher(plan.teacher.config(size), student, precision="bf16")
        cfg = stage1_cfg(batch, size, checkpoint_every=0)
        torch.manual_seed(init_seed)
        task = Stage1Task(student, teacher, cfg)
        optimizer, scheduler = stage1_optimizer(task, cfg)
        fit(
            task, optimizer, scheduler, StepBatches(_RandomImages(4 * batch, size), batch, seed=3), steps=steps,
            stage="stage1b", checkpoint_dir=ckpt, callbacks=callbacks, device=dev, precision=plan.precision, seed=1,
            exclude_prefixes=("teacher.",),
        )  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="gkd-gpu-check-") as tmp:
        reference, first, resumed = RecordingCallbacks(), RecordingCallbacks(stop_at_step=stop), RecordingCallbacks()
        run(Path(tmp, "ref"), reference, 0)
        try:
            run(Path(tmp, "cut"), first, 0)
        except StopRequested as exc:
            rec["stopped_at"] = exc.step
            rec["checkpoint_mib"] = exc.checkpoint.stat().st_size / 2**20 if exc.checkpoint else None
        else:
            raise RuntimeError(f"asked to stop after step {stop}, the run finished instead")
        run(Path(tmp, "cut"), resumed, 7)  # other initial weights: the checkpoint must win
    want, got = reference.values("loss"), resumed.values("loss")
    rec.update(
        device=str(dev), precision=f"{ctx.plan.precision} autocast", steps=steps, image_size=size, batch=batch,
        reference_losses=want, resumed_losses=got, resumed_events=[e for e in resumed.events if "resumed" in e],
    )  # fmt: skip
    if sorted(got) != list(range(stop + 1, steps + 1)):
        raise RuntimeError(f"resumed run logged steps {sorted(got)}, expected {stop + 1}..{steps}")
    diffs = {s: abs(got[s] - want[s]) / max(abs(want[s]), 1e-12) for s in got}
    rec["max_rel_diff"] = max(diffs.values())
    rec["bit_identical"] = all(got[s] == want[s] for s in got)
    rec["tolerance"] = 1e-3  # as tests/gkd_core/engine/test_cuda.py: GPU kernels may reduce in another order
    if rec["max_rel_diff"] > rec["tolerance"]:
        raise RuntimeError(f"resumed losses differ from the uninterrupted run by up to {rec['max_rel_diff']:.2e}")
    same = "bit-identical" if rec["bit_identical"] else f"max rel diff {rec['max_rel_diff']:.1e}"
    return f"stopped at {rec['stopped_at']}, resumed steps {stop + 1}-{steps}: same losses ({same})"


def section_input_pipeline(ctx: Context, rec: dict[str, Any]) -> str:
    """bench/dataloader.py's cases (1a JPEGs, 1b and stage-2 PNGs; files and prepared): images/s per CPU core,
    and the cores one GPU needs at the stage-1 rates measured above (the paper-size estimate where none ran)."""
    from bench.dataloader import measure_sets, paper_stage1_rates

    measured = {k: {"images_per_s": v} for k, v in ctx.stage1_images_per_s.items()}
    rates = measured if len(measured) == 2 else paper_stage1_rates(mfu=0.4)
    w = ctx.plan.pipeline
    rec.update(
        workload=dataclasses.asdict(w), cpu_count=os.cpu_count(),
        gpu_rate_source="measured here" if rates is measured else "paper-size estimate (MFU 40% of H100 bf16)",
    )  # fmt: skip
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="gkd-gpu-check-") as tmp:
        rec["sets"] = measure_sets(Path(tmp), w, rates, log=lines.append)
    rec["log"] = lines
    # Both figures are of the best path a job takes by default (not the "prepared at training size" trade-off).
    rec["cores_per_gpu"] = {key: s["best_default_cores_per_gpu"] for key, s in rec["sets"].items()}
    rec["images_per_s_per_core"] = {
        key: s["gpu_images_per_s"] / s["best_default_cores_per_gpu"] for key, s in rec["sets"].items()
    }
    return ", ".join(
        f"{k} {rec['images_per_s_per_core'][k]:.0f} img/s/core ({rec['cores_per_gpu'][k]:.0f} cores per GPU)"
        for k in rec["sets"]
    )


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _loaded_by(packages: frozenset[str]) -> set[str]:
    """Top-level modules a fresh interpreter holds after importing ``packages`` and, of ours, only the
    torchvision shim (gkd_core/_compat.py imports torch alone; timm cannot be imported here without it)."""
    code = "import sys\nimport gkd_core._compat\n" + "".join(f"import {name}\n" for name in sorted(packages))
    code += "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    if out.returncode != 0:
        raise RuntimeError(f"importing {sorted(packages)} alone failed: {out.stderr.strip()[-300:]}")
    return set(out.stdout.split())


def section_import_hygiene(ctx: Context, rec: dict[str, Any]) -> str:
    """No server-stack module loaded in this process; what the touched gkd_core modules import."""
    loaded = {name.split(".")[0] for name in list(sys.modules)}
    stdlib = set(sys.stdlib_module_names)
    # What the allowed libraries pull in themselves (huggingface_hub 1.x, under timm, imports httpx) is theirs.
    by_dependencies = _loaded_by(GKD_CORE_ALLOWED_IMPORTS - {"gkd_core", "gkd_catalog"}) & set(FORBIDDEN_MODULES)
    rec["forbidden_loaded_by_dependencies"] = sorted(by_dependencies)
    rec["forbidden_loaded"] = sorted((loaded & set(FORBIDDEN_MODULES)) - by_dependencies)
    rec["third_party_loaded"] = sorted(n for n in loaded - stdlib if not n.startswith("_") and n not in {"bench"})
    core_dir = REPO / "gkd_core"
    touched = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if name.startswith("gkd_core") and file and Path(file).resolve().is_relative_to(core_dir):
            touched[name] = sorted(_imports_of(Path(file)) - stdlib - {"__future__"})
    rec["gkd_core_modules"] = sorted(touched)
    rec["gkd_core_other_imports"] = {
        n: sorted(set(i) - GKD_CORE_ALLOWED_IMPORTS) for n, i in touched.items() if set(i) - GKD_CORE_ALLOWED_IMPORTS
    }
    if rec["forbidden_loaded"]:
        raise RuntimeError(f"server-stack modules were imported: {rec['forbidden_loaded']}")
    others = rec["gkd_core_other_imports"]
    if any(set(v) & set(FORBIDDEN_MODULES) for v in others.values()):
        raise RuntimeError(f"gkd_core modules used here import server-stack packages: {others}")
    where = f"{len(touched)} gkd_core modules touched"
    if others:
        return f"no server-stack module loaded; {where}; imports beyond torch/timm/numpy/PIL/safetensors: {others}"
    return f"no server-stack module loaded; {where}, importing only torch/timm/numpy/PIL/safetensors"

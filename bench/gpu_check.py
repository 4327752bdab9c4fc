"""One command that checks a CUDA machine for GKD and measures what the training defaults depend on.

Run from the checkout with nothing installed but python, torch >= 2.4 (as pyproject.toml allows), timm, numpy, pillow,
safetensors and pytest (no network, random weights)::

    PYTHONPATH=. python bench/gpu_check.py --out DIR        # or: PYTHONPATH=. python -m bench.gpu_check --out DIR
    PYTHONPATH=. python bench/gpu_check.py --smoke --out DIR  # every section on CPU at toy sizes (CI)

Sections (each timed and isolated: a failure is recorded with its traceback and the rest still run;
a global time budget, 7.5 min by default, skips what is left with a note; a CUDA out-of-memory
error halves the batch and retries, recorded):

* ``gpu_tests``: the ``gpu``-marked tests under tests/gkd_core in a pytest subprocess that loads no
  conftest above tests/gkd_core (tests/conftest.py pulls in the server stack); pass/fail counts.
  Without CUDA (smoke on CPU) the tests are only collected.
* ``matmul_peak``: bf16 large square matmuls, CUDA events, after warm-up: the peak for every MFU figure.
* ``stage1_1b`` / ``stage1_1a``: a GKD stage-1 step at the paper's sizes (DINOv2 ViT-B/14 teacher,
  DeiT-S/16 student, bf16 autocast; 1b: 512 px, 32 images, teacher kernel resized to 16; 1a: 224
  px, 128 images, student kernel resized to 14, native teacher) against the bare minimum of
  bench/stage1_step.py: ms/step, images/s, ratio, FLOPs (FlopCounterMode), MFU, peak memory.
* ``stage2_heads``: one stage-2 step per head of ``gkd_core.models.heads.HEADS`` at 512 px on the
  frozen student (through bench/stage2_heads.py's ``run`` when that file exists).
* ``sliding_window_eval``: ``evaluate_segmentation`` (sliding window 512, stride 341) on 1024x512 images.
* ``checkpoint_resume``: ``fit`` on the device, stopped and resumed from its checkpoint: same next losses.
* ``input_pipeline``: bench/dataloader.py's cases (1a, 1b, stage 2; files and prepared) on a smaller set: images/s
  per core and the cores one GPU needs at the stage-1 rates measured above.
* ``option_fused_adamw``, ``option_sdpa``, ``option_channels_last``, ``option_compile``: each option
  on and off where it applies; the JSON says which is faster (the default is decided from the figures).
* ``import_hygiene``: the process loaded none of the server stack (fastapi, sqlalchemy, celery,
  boto3, pydantic-settings, httpx, typer, onnxscript, the service packages); the gkd_core modules
  it touched import only torch, timm, numpy, PIL and safetensors.

Writes ``DIR/gpu_check.json`` (after every section, so a killed run keeps what it measured),
``DIR/gpu_check.txt`` (the printed report) and ``DIR/gpu_tests.xml`` (pytest's JUnit report).
``--only`` / ``--skip`` pick sections, ``--budget`` sets the time budget in seconds. A full-size run on CUDA
also files its achieved FLOP/s per phase under the GPU's name in gkd_catalog/throughput.json (``--throughput``),
which ``POST /v1/jobs:estimate`` turns into GPU-hours.

This file is the runner (section order, budget, table, JSON); sizes, timing and out-of-memory
handling are in bench/gpu_check_plan.py, the sections in bench/gpu_check_sections.py and the
on/off option comparisons in bench/gpu_check_options.py. See docs/PERFORMANCE.md, "GPU check".
"""

# ruff: noqa: E402  (the clock starts before the heavy imports: the budget includes them)
from __future__ import annotations

import time

_T0 = time.monotonic()  # the budget counts from here, imports included

# isort: split
import argparse
import contextlib
import json
import os
import platform
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

import gkd_core  # noqa: F401  (torchvision shim before timm)
from gkd_catalog.throughput import THROUGHPUT_PATH, record_gpu_check
from gkd_core.engine.speed import SPEED_DEFAULTS_PATH, record_defaults

# isort: split
import timm

from bench.gpu_check_options import (
    section_option_channels_last,
    section_option_compile,
    section_option_fused_adamw,
    section_option_sdpa,
)
from bench.gpu_check_plan import (
    Context,
    Plan,
    Section,
    cpu_plan,
    free_memory,
    full_plan,
    halving_batch,
    smoke_plan,
)
from bench.gpu_check_sections import (
    FORBIDDEN_MODULES,
    section_checkpoint_resume,
    section_gpu_tests,
    section_import_hygiene,
    section_input_pipeline,
    section_matmul_peak,
    section_sliding_window_eval,
    section_stage1_1a,
    section_stage1_1b,
    section_stage2_heads,
)

__all__ = [
    "FORBIDDEN_MODULES",
    "SECTIONS",
    "SECTION_NAMES",
    "Context",
    "Section",
    "halving_batch",
    "main",
    "run_sections",
]

SECTIONS = (
    Section("gpu_tests", section_gpu_tests, 30),
    Section("matmul_peak", section_matmul_peak, 5),
    Section("stage1_1b", section_stage1_1b, 20),
    Section("stage1_1a", section_stage1_1a, 20),
    Section("stage2_heads", section_stage2_heads, 20),
    Section("sliding_window_eval", section_sliding_window_eval, 10),
    Section("checkpoint_resume", section_checkpoint_resume, 20),
    Section("input_pipeline", section_input_pipeline, 20),
    Section("option_fused_adamw", section_option_fused_adamw, 15),
    Section("option_sdpa", section_option_sdpa, 20),
    Section("option_channels_last", section_option_channels_last, 20),
    Section("option_compile", section_option_compile, 120),
    Section("import_hygiene", section_import_hygiene, float("-inf")),  # always: it costs nothing
)
SECTION_NAMES = tuple(s.name for s in SECTIONS)


# ------------------------------------------------------------------------------------------- runner


def run_sections(
    ctx: Context, sections: Sequence[Section], results: dict[str, Any], on_done: Callable[[str], None] | None = None
) -> None:
    """Run each section in turn into ``results[name]``; a failure or a spent budget never stops the rest."""
    for section in sections:
        needed = section.min_seconds if not ctx.plan.smoke else min(section.min_seconds, 0.5)
        left = ctx.remaining()
        if left < needed:
            note = f"time budget spent: {max(left, 0):.0f} s left, this section needs about {needed:.0f} s"
            results[section.name] = {"status": "skipped", "note": note, "summary": note}
        else:
            rec: dict[str, Any] = {}
            tick = time.monotonic()
            try:
                summary, status = section.run(ctx, rec), "ok"
            except Exception as exc:
                status = "failed"
                rec["error"] = f"{type(exc).__name__}: {exc}"
                rec["traceback"] = traceback.format_exc()
                summary = rec["error"].splitlines()[0][:200]
            free_memory(ctx.device)
            results[section.name] = {"status": status, "seconds": time.monotonic() - tick, "summary": summary, **rec}
        if on_done is not None:
            on_done(section.name)


def _cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    import numpy
    import PIL

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": numpy.__version__,
        "pillow": PIL.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": str(device),
        "device_name": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "host": platform.node(),
    }
    with contextlib.suppress(ImportError):
        import safetensors

        env["safetensors"] = safetensors.__version__
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(
            device_name=props.name,
            capability=f"{props.major}.{props.minor}",
            memory_gib=props.total_memory / 2**30,
            bf16_supported=torch.cuda.is_bf16_supported(),
        )
    return env


def header(env: dict[str, Any], plan: Plan, budget: float) -> str:
    mem = f", {env['memory_gib']:.0f} GiB, cc {env['capability']}" if "memory_gib" in env else ""
    return "\n".join(
        [
            f"GKD gpu_check ({plan.label}), budget {budget:.0f} s",
            f"device  {env['device']}: {env['device_name']}{mem}",
            f"torch   {env['torch']} (CUDA {env['cuda']}, cuDNN {env['cudnn']}), timm {env['timm']}, "
            f"numpy {env['numpy']}, python {env['python']}, {env['cpu_count']} CPUs",
        ]
    )


def table(results: dict[str, Any]) -> str:
    width = max(len(n) for n in results)
    lines = [f"{'section':<{width}}  {'status':<7} {'seconds':>7}  figures", "-" * (width + 100)]
    for name, r in results.items():
        seconds = f"{r['seconds']:7.1f}" if "seconds" in r else " " * 7
        lines.append(f"{name:<{width}}  {r['status']:<7} {seconds}  {r.get('summary', '')}")
    decisions = [d for r in results.values() for d in r.get("decisions", [])]
    if decisions:
        lines += ["", "options (the faster setting per option; the default is decided from these figures):"]
        lines += [f"  {d['line']}" for d in decisions]
    return "\n".join(lines)


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for gpu_check.json, gpu_check.txt, gpu_tests.xml"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="toy sizes on the CPU (or --device) in well under a minute"
    )
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for the whole run (default 7.5 min)")
    parser.add_argument(
        "--device",
        default=None,
        help="default: cuda (full sizes), cpu (smoke); --device cpu without --smoke: bench/stage1_step.py's sizes",
    )
    parser.add_argument("--only", nargs="+", choices=SECTION_NAMES, help="run only these sections")
    parser.add_argument("--skip", nargs="+", choices=SECTION_NAMES, default=[], help="leave these sections out")
    parser.add_argument(
        "--throughput",
        type=Path,
        default=THROUGHPUT_PATH,
        help="file the measured FLOP/s per phase under this GPU's name here (full sizes on CUDA only; "
        f"default {THROUGHPUT_PATH.name} in gkd_catalog, which job estimates read); '-' to skip",
    )
    parser.add_argument(
        "--defaults",
        type=Path,
        default=SPEED_DEFAULTS_PATH,
        help="file the option verdicts as this device's training defaults here (not smoke runs; default "
        f"{SPEED_DEFAULTS_PATH.name} in gkd_core/engine, which training reads); '-' to skip",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    plan = smoke_plan(device) if args.smoke else full_plan() if device.type == "cuda" else cpu_plan()
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: CUDA is not available here; use --smoke for the CPU check", file=sys.stderr)
        return 2
    if device.type == "cuda":
        if device.index is None:  # set_device and friends want an index
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    if plan.threads:
        torch.set_num_threads(plan.threads)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    ctx = Context(plan=plan, device=device, deadline=_T0 + args.budget, out=args.out)
    env = environment(device)
    top = header(env, plan, args.budget)
    print(top, flush=True)
    wanted = [s for s in SECTIONS if (not args.only or s.name in args.only) and s.name not in args.skip]
    results: dict[str, Any] = {}
    report: dict[str, Any] = {
        "meta": {**env, "smoke": plan.smoke, "budget_s": args.budget, "argv": sys.argv, "started": time.time()},
        "plan": asdict(plan),
        "sections": results,
    }
    json_path = args.out / "gpu_check.json"

    def done(name: str) -> None:
        r = results[name]
        print(f"[{time.monotonic() - _T0:6.1f} s] {name}: {r['status']} - {r.get('summary', '')}", flush=True)
        report["elapsed_s"] = time.monotonic() - _T0
        report["options"] = [d for r in results.values() for d in r.get("decisions", [])]  # a killed run keeps them
        write_json(json_path, report)

    run_sections(ctx, wanted, results, done)
    report["elapsed_s"] = time.monotonic() - _T0
    report["meta"]["finished"] = time.time()
    report["options"] = [d for r in results.values() for d in r.get("decisions", [])]
    write_json(json_path, report)
    final = table(results)
    counts = {s: sum(r["status"] == s for r in results.values()) for s in ("ok", "failed", "skipped")}
    tail = f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped in {report['elapsed_s']:.1f} s"
    print(f"\n{final}\n\n{tail}; JSON: {json_path}")
    if str(args.throughput) != "-":
        kind = record_gpu_check(report, args.throughput)
        note = f"rates of {kind} filed in {args.throughput}" if kind else "no rates filed (smoke, CPU or none measured)"
        print(f"throughput table: {note}")
    if str(args.defaults) != "-":
        keys = record_defaults(report, args.defaults)
        filed = f"filed under {', '.join(keys)} in {args.defaults}"
        print(f"speed defaults: {filed if keys else 'nothing filed (smoke, or no option timed)'}")
    (args.out / "gpu_check.txt").write_text(f"{top}\n\n{final}\n\n{tail}\n")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())

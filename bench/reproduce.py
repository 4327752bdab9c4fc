"""Reproduce the paper's comparison (METHOD.md, Table 1) small, on the synthetic domain-shift benchmark.

Steps: generate (or reuse) the benchmark; pretrain a "foundation" teacher on the randomized style
pool (method none, fine-tuned) and save its backbone as safetensors; train every arm on the source
(toon) only with the same teacher, student initialisation and head, at one or more stage-1 budgets
with every arm matched in images seen (bench/reproduce_budget.py); evaluate every arm on the source
and every target over seeds; write ``results.json``, a markdown report (per-budget tables, the
fraction of the teacher's lead carried, CKA to the teacher, ablation verdicts) and charts.

Run from the repository root::

    .venv/bin/python -m bench.reproduce --out /tmp/gkd-repro --threads 1     # default size, 3 seeds
    .venv/bin/python -m bench.reproduce --out /tmp/gkd-repro-q --quick       # smoke run
    .venv/bin/python -m bench.reproduce --out D --arms gkd kd --seeds 1
    .venv/bin/python -m bench.reproduce --out D --sweep --threads 1          # the preset's budget sweep
    .venv/bin/python -m bench.reproduce --out D --size gpu --device cuda     # one H100/H200, < 8 min (est.)
    .venv/bin/python -m bench.reproduce --out D --size gpu --estimate        # print the time estimate only

Finished runs are reused from ``--out`` (each run writes ``reproduce_result.json``), so an
interrupted run continues where it stopped; ``--report-only`` writes the report from the runs
finished so far. On a machine shared with other jobs ``--threads 1`` is much faster than more threads.
``--via-api`` submits the same comparison to a running
service instead (bench/reproduce_service.py).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from bench.reproduce_config import ARM_NAMES, PRESETS, SizePreset, select_arms

_logger = logging.getLogger("bench.reproduce")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--out", type=Path, required=True, help="output directory (benchmark, runs, results.json)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke size (small models, few steps, 1 seed)")
    size.add_argument("--size", choices=sorted(PRESETS), default=None, help="size preset (default: 'default')")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default: the preset's; 3)")
    p.add_argument("--arms", nargs="+", default=None, metavar="ARM", help=f"subset of {', '.join(ARM_NAMES)}")
    budgets = p.add_mutually_exclusive_group()
    budgets.add_argument(
        "--stage1-budgets", type=int, nargs="+", default=None, metavar="B", help="stage-1 budgets (steps per step)"
    )
    budgets.add_argument("--sweep", action="store_true", help="run the preset's stage-1 budget sweep")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device of every run")
    p.add_argument("--estimate", action="store_true", help="print the run-time estimate and exit")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--benchmark", type=Path, default=None, help="benchmark directory (default: OUT/benchmark)")
    p.add_argument("--results-md", type=Path, default=None, help="markdown report (default: OUT/RESULTS.md)")
    p.add_argument(
        "--chart", type=Path, default=None, help="chart PNG name stem: STEM_b<B>.png, STEM_budget.png, STEM_cka.png"
    )
    p.add_argument("--chart-link", default=None, help="folder the markdown links the charts from (default: paths)")
    p.add_argument("--notes", type=Path, default=None, help="markdown file appended to the report (the reading)")
    p.add_argument("--source", default=None, help="diagnostic: train on this domain instead of toon")
    p.add_argument("--report-only", action="store_true", help="train nothing; report the runs finished in OUT")
    p.add_argument("--via-api", default=None, metavar="URL", help="submit the comparison to a running service")
    p.add_argument("--api-key", default=None, help="API key for --via-api (default: $GKD_API_KEY)")
    args = p.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        p.error("--seeds must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    if args.stage1_budgets is not None and min(args.stage1_budgets) < 1:
        p.error(f"--stage1-budgets must be at least 1 step each, got {args.stage1_budgets}")
    if args.device == "cuda" and not args.estimate and not args.report_only and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False); use --device cpu")
    if args.via_api and (args.sweep or len(args.stage1_budgets or []) > 1):
        p.error("--via-api runs one stage-1 budget; give at most one with --stage1-budgets")
    try:
        select_arms(args.arms)
    except ValueError as exc:
        p.error(str(exc))
    return args


def stage1_budgets(args: argparse.Namespace, preset: SizePreset) -> list[int]:
    """The stage-1 budgets to run, in the order given, without repeats."""
    chosen = args.stage1_budgets or (list(preset.sweep) if args.sweep else [preset.stage1_budget])
    if args.sweep and not preset.sweep:
        raise SystemExit(f"preset {preset.name!r} has no sweep; give --stage1-budgets")
    return list(dict.fromkeys(chosen))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison; returns the JSON-ready results (also written to OUT/results.json)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    preset = PRESETS["quick" if args.quick else (args.size or "default")]
    n_seeds = args.seeds or preset.seeds
    arms = select_arms(args.arms)
    budgets = stage1_budgets(args, preset)
    from bench.reproduce_budget import estimate_seconds

    estimate = estimate_seconds(preset, arms, budgets, n_seeds, device=args.device)
    if args.estimate:
        print(f"{estimate['seconds'] / 60:.1f} min: {estimate['basis']}\nsteps: {estimate['steps']}")
        return {"estimate": estimate}
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.reproduce " + shlex.join(sys.argv[1:] if argv is None else argv)
    settings = {
        "preset": preset.to_dict(),
        "seeds": n_seeds,
        "stage1_budgets": budgets,
        "arms": [a.name for a in arms],
        "device": args.device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "estimate": {"seconds": estimate["seconds"], "basis": estimate["basis"]},
    }
    start = time.perf_counter()
    if args.report_only:
        settings["report_only"] = True
    if args.via_api:
        from bench.reproduce_service import run_via_api

        return run_via_api(args, preset, arms, n_seeds, out, budgets[0])

    from bench.reproduce_run import prepare_benchmark, run_comparison

    stamp = out / "reproduce_started.txt"
    if not stamp.is_file() and not args.report_only:
        stamp.write_text(f"{time.time()}\n{command}\n")
    if args.report_only and stamp.is_file():
        lines = stamp.read_text().splitlines()
        command = (lines[1] if len(lines) > 1 else "(training command not recorded)") + "\n" + command
    bench = prepare_benchmark((args.benchmark or out / "benchmark").resolve(), preset, source=args.source)
    raw = run_comparison(
        out, bench, preset, arms, list(range(n_seeds)), budgets, train=not args.report_only, device=args.device
    )
    wall = _elapsed_in(out) if args.report_only else time.perf_counter() - start
    results = {
        "settings": settings,
        "command": command,
        "wall_s": wall,
        "benchmark": {"root": str(bench.root), "source": bench.source, "targets": bench.targets, "pool": bench.pool},
        "teacher_pretrain": raw["teacher_pretrain"],
        **write_report(args, out, raw, bench, settings, command, wall),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    _logger.info("wrote %s and the report in %.1f min", out / "results.json", wall / 60)
    return results


def write_report(
    args: argparse.Namespace,
    out: Path,
    raw: dict[str, Any],
    bench: Any,
    settings: dict[str, Any],
    command: str,
    wall: float,
) -> dict[str, Any]:
    """Summaries, evidence (lead carried, CKA, verdicts), charts and RESULTS.md; returns their JSON part."""
    from bench.reproduce_charts import budget_chart, cka_chart
    from bench.reproduce_evidence import (
        ABLATIONS,
        ablation_verdicts,
        cka_points,
        cka_summary,
        lead_carried,
        pearson,
        pearson_by_domain,
    )
    from bench.reproduce_markdown import results_markdown
    from bench.reproduce_report import bar_chart, summarize

    targets, source = bench.targets, bench.source
    per_budget = {
        int(b): {**data, "arms": {k: v for k, v in data["arms"].items() if v["seeds"]}}
        for b, data in raw["budgets"].items()
    }
    arms_by_budget = {b: data["arms"] for b, data in per_budget.items()}
    summaries = {b: summarize(arms, targets, source) for b, arms in arms_by_budget.items()}
    points = cka_points(arms_by_budget, targets)
    r = pearson(points)
    evidence: dict[str, Any] = {
        "lead": {b: lead_carried(arms, targets) for b, arms in arms_by_budget.items()},
        "cka": {b: cka_summary(arms, targets) for b, arms in arms_by_budget.items()},
        "cka_r": r,
        "cka_r_by_domain": pearson_by_domain(points),
        "cka_n": len(points),
        "verdicts": ablation_verdicts(arms_by_budget, targets),
        "ablation_notes": {a.name: a.paper + (f" (caveat: {a.caveat})" if a.caveat else "") for a in ABLATIONS},
    }
    preset_name, n = settings["preset"]["name"], settings["seeds"]
    base = args.chart or out / "results.png"
    chart_paths: dict[str, Path] = {}
    for b, summary in summaries.items():
        if summary:
            title = f"{preset_name} size, stage-1 budget {b}, {n} seed(s): mIoU on targets and source"
            chart_paths[f"bars_{b}"] = bar_chart(
                summary, source, base.with_name(f"{base.stem}_b{b}{base.suffix}"), title
            )
    chart_paths["budget"] = budget_chart(
        summaries, base.with_name(f"{base.stem}_budget{base.suffix}"), f"{preset_name} size, {n} seed(s)"
    )
    chart_paths["cka"] = cka_chart(points, r, base.with_name(f"{base.stem}_cka{base.suffix}"))
    link = args.chart_link
    charts = {k: (f"{link.rstrip('/')}/{p.name}" if link else str(p)) for k, p in chart_paths.items()}
    md = results_markdown(
        per_budget=per_budget,
        summaries=summaries,
        evidence=evidence,
        targets=targets,
        source=source,
        settings=settings,
        command=command,
        wall_s=wall,
        teacher_pre=raw["teacher_pretrain"]["miou"],
        charts=charts,
        notes=args.notes.read_text() if args.notes else "",
    )
    md_path = args.results_md or out / "RESULTS.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(md)
    return {
        "budgets": {str(b): data for b, data in per_budget.items()},
        "summary": {str(b): s for b, s in summaries.items()},
        "evidence": {
            **evidence,
            "lead": {str(b): v for b, v in evidence["lead"].items()},
            "cka": {str(b): v for b, v in evidence["cka"].items()},
            "cka_points": [vars(p) for p in points],
        },
        "charts": {k: str(p) for k, p in chart_paths.items()},
        "results_md": str(md_path),
    }


def _elapsed_in(out: Path) -> float:
    """Seconds from the first training call in ``out`` to its newest finished run (for --report-only)."""
    stamp = out / "reproduce_started.txt"
    finished = [p.stat().st_mtime for p in out.glob("runs/**/reproduce_result.json")]
    if not stamp.is_file() or not finished:
        return float("nan")
    return max(finished) - float(stamp.read_text().splitlines()[0])


if __name__ == "__main__":
    main()

"""Reproduce the paper's comparison (METHOD.md, Table 1) small, on the synthetic domain-shift benchmark.

Steps: generate (or reuse) the benchmark; pretrain a "foundation" teacher on the randomized style
pool (method none, fine-tuned) and save its backbone as safetensors; train every arm on the source
(toon) only with the same teacher, student initialisation, head and budget; evaluate every arm on
the source and every target over seeds; write ``results.json``, a markdown report and a bar chart.

Run from the repository root::

    .venv/bin/python -m bench.reproduce --out /tmp/gkd-repro --threads 1     # default size, 3 seeds
    .venv/bin/python -m bench.reproduce --out /tmp/gkd-repro-q --quick       # smoke run
    .venv/bin/python -m bench.reproduce --out D --arms gkd kd --seeds 1

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

from bench.reproduce_config import ARM_NAMES, PRESETS, select_arms
from bench.reproduce_report import bar_chart, results_markdown, summarize

_logger = logging.getLogger("bench.reproduce")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("--out", type=Path, required=True, help="output directory (benchmark, runs, results.json)")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smoke size (small models, few steps, 1 seed)")
    size.add_argument("--size", choices=sorted(PRESETS), default=None, help="size preset (default: 'default')")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds 0..N-1 (default: the preset's; 3)")
    p.add_argument("--arms", nargs="+", default=None, metavar="ARM", help=f"subset of {', '.join(ARM_NAMES)}")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--benchmark", type=Path, default=None, help="benchmark directory (default: OUT/benchmark)")
    p.add_argument("--results-md", type=Path, default=None, help="markdown report (default: OUT/RESULTS.md)")
    p.add_argument("--chart", type=Path, default=None, help="bar chart PNG (default: OUT/results.png)")
    p.add_argument("--chart-link", default=None, help="how the markdown links the chart (default: its path)")
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
    try:
        select_arms(args.arms)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the comparison; returns the JSON-ready results (also written to OUT/results.json)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    preset = PRESETS["quick" if args.quick else (args.size or "default")]
    n_seeds = args.seeds or preset.seeds
    arms = select_arms(args.arms)
    if args.threads:
        torch.set_num_threads(args.threads)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m bench.reproduce " + shlex.join(sys.argv[1:] if argv is None else argv)
    settings = {
        "preset": preset.to_dict(),
        "seeds": n_seeds,
        "arms": [a.name for a in arms],
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    start = time.perf_counter()
    if args.report_only:
        settings["report_only"] = True
    if args.via_api:
        from bench.reproduce_service import run_via_api

        return run_via_api(args, preset, arms, n_seeds, out)

    from bench.reproduce_run import prepare_benchmark, run_comparison

    stamp = out / "reproduce_started.txt"
    if not stamp.is_file() and not args.report_only:
        stamp.write_text(f"{time.time()}\n{command}\n")
    if args.report_only and stamp.is_file():
        lines = stamp.read_text().splitlines()
        command = (lines[1] if len(lines) > 1 else "(training command not recorded)") + "\n" + command
    bench = prepare_benchmark((args.benchmark or out / "benchmark").resolve(), preset, source=args.source)
    raw = run_comparison(out, bench, preset, arms, list(range(n_seeds)), train=not args.report_only)
    raw["arms"] = {k: v for k, v in raw["arms"].items() if v["seeds"]}
    wall = time.perf_counter() - start
    if args.report_only:
        wall = _elapsed_in(out)
    summary = summarize(raw["arms"], bench.targets, bench.source)
    results = {
        "settings": settings,
        "command": command,
        "wall_s": wall,
        "benchmark": {"root": str(bench.root), "source": bench.source, "targets": bench.targets, "pool": bench.pool},
        **raw,
        "summary": summary,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    chart = args.chart or out / "results.png"
    bar_chart(summary, bench.source, chart, f"{preset.name} size, {n_seeds} seed(s): mIoU on targets and source")
    notes = args.notes.read_text() if args.notes else ""
    md = results_markdown(
        summary=summary,
        targets=bench.targets,
        source=bench.source,
        settings=settings,
        command=command,
        wall_s=wall,
        teacher_pre=raw["teacher_pretrain"]["miou"],
        chart=args.chart_link or str(chart),
        notes=notes,
    )
    md_path = args.results_md or out / "RESULTS.md"
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(md)
    _logger.info("wrote %s, %s and %s in %.1f min", out / "results.json", md_path, chart, wall / 60)
    return results


def _elapsed_in(out: Path) -> float:
    """Seconds from the first training call in ``out`` to its newest finished run (for --report-only)."""
    stamp = out / "reproduce_started.txt"
    finished = [p.stat().st_mtime for p in out.glob("runs/*/*/reproduce_result.json")]
    if not stamp.is_file() or not finished:
        return float("nan")
    return max(finished) - float(stamp.read_text().splitlines()[0])


if __name__ == "__main__":
    main()

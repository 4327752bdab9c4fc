"""The RESULTS.md text of a comparison run: compute matching, per-budget tables, CKA, verdicts, settings."""

from __future__ import annotations

import json
import math
from typing import Any

from bench.reproduce_budget import MATCHING_RULE
from bench.reproduce_config import ARMS
from bench.reproduce_evidence import MIN_LEAD_POINTS, VERDICT_RULE
from bench.reproduce_report import markdown_table

_LABELS = {a.name: a.label for a in ARMS}


def _label(name: str) -> str:
    return _LABELS.get(name, name)


def _pct(stat: dict[str, float], digits: int = 1, scale: float = 100.0) -> str:
    if stat.get("n", 1) == 0 or math.isnan(stat["mean"]):
        return "n/a"
    text = f"{stat['mean'] * scale:.{digits}f}"
    return f"{text} ± {stat['std'] * scale:.{digits}f}" if stat.get("n", 2) > 1 else text


def matching_section(per_budget: dict[int, dict[str, Any]], stage1_batch: int, stage2_batch: int) -> list[str]:
    """The compute-matching rule and the steps and images of every arm at every budget."""
    lines = [
        "## Compute matching",
        "",
        f"Stage-1 batch {stage1_batch}, stage-2 batch {stage2_batch}. " + MATCHING_RULE,
        "",
        "| budget | arm | 1a steps | 1b steps | stage-2 steps | images seen | rule |",
        "|---|---|---|---|---|---|---|",
    ]
    for budget, data in per_budget.items():
        for name, b in data["arm_budgets"].items():
            lines.append(
                f"| {budget} | {_label(name)} | {b['proxy_steps']} | {b['stage1_steps']} | {b['stage2_steps']} "
                f"| {b['images']:,} | {b['rule']} |"
            )
    lines += [
        "",
        "Images are not FLOPs: a stage-1 step also runs the teacher forward and a masked student view, and a "
        "frozen-encoder stage-2 step backpropagates through the head only; the measured seconds per arm are "
        "in the last table.",
        "",
    ]
    return lines


def lead_and_cka_section(
    budget: int, lead: dict[str, dict[str, Any]], cka: dict[str, dict[str, dict[str, float]]], targets: list[str]
) -> list[str]:
    lines: list[str] = []
    if lead:
        lines += [
            f"Fraction of the teacher's lead over frozen no-KD carried on the target average (budget {budget}; "
            f"per seed, mean ± std; seeds whose lead is under {MIN_LEAD_POINTS} points are left out):",
            "",
            "| arm | lead carried | seeds without a lead |",
            "|---|---|---|",
        ]
        lines += [f"| {_label(n)} | {_pct(v, 2, 1.0)} | {v['seeds_without_lead']} |" for n, v in lead.items()]
        lines.append("")
    if cka:
        lines += [
            f"Linear CKA of each student's final patch tokens to the frozen teacher's, per target domain "
            f"(budget {budget}; mean ± std over seeds; from each run's robustness report):",
            "",
            "| arm | " + " | ".join(targets) + " |",
            "|---|" + "---|" * len(targets),
        ]
        for name, per in cka.items():
            lines.append(f"| {_label(name)} | " + " | ".join(_pct(per[d], 3, 1.0) for d in targets) + " |")
        lines.append("")
    return lines


def verdict_section(verdicts: list[dict[str, Any]], notes: dict[str, str]) -> list[str]:
    lines = ["## Ablations: verdicts", "", "Rule: " + VERDICT_RULE + ".", ""]
    if not verdicts:
        return [*lines, "No ablation has both of its arms in this run.", ""]
    lines += [
        "| ablation | budget | paper's better arm | other arm | difference (points) | SE | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in verdicts:
        se = "n/a" if math.isnan(v["se"]) else f"{v['se'] * 100:.2f}"
        lines.append(
            f"| {v['ablation']} | {v['budget']} | {_label(v['better'])} | {_label(v['worse'])} "
            f"| {v['diff'] * 100:+.2f} | {se} | {v['verdict']} |"
        )
    lines.append("")
    lines += [f"- {name}: {text}" for name, text in notes.items()]
    return [*lines, ""]


def _timing(settings: dict[str, Any], wall_s: float) -> str:
    """Wall time and threads of a training run; a report-only run knows only when the first run started."""
    if settings.get("report_only"):
        return (f"report written {wall_s / 60:.1f} min after the first run in this folder started (training "
                "processes' threads and idle gaps not recorded here)")  # fmt: skip
    return f"wall time {wall_s / 60:.1f} min ({settings['threads']} torch threads)"


def results_markdown(
    *,
    per_budget: dict[int, dict[str, Any]],
    summaries: dict[int, dict[str, dict[str, Any]]],
    evidence: dict[str, Any],
    targets: list[str],
    source: str,
    settings: dict[str, Any],
    command: str,
    wall_s: float,
    teacher_pre: dict[str, float],
    charts: dict[str, str],
    notes: str = "",
) -> str:
    """The whole RESULTS.md text of a run over one or more stage-1 budgets."""
    s = settings
    preset = s["preset"]
    lines = [
        "# Results: the paper's comparison on the synthetic domain-shift benchmark",
        "",
        f"Size preset **{preset['name']}**, stage-1 budgets {', '.join(map(str, per_budget))}, {s['seeds']} seed(s), "
        f"device {s['device']}, {_timing(s, wall_s)}. Every arm is "
        f"trained on the source (`{source}`) only; mIoU % per domain, mean ± sample std over seeds (no spread "
        "shown for one seed). Best student target average in bold.",
        "",
    ]
    if teacher_pre:
        lines += [
            "Pretrained teacher (fine-tuned on the pool, its own head): "
            + ", ".join(f"{d} {v * 100:.1f}" for d, v in teacher_pre.items())
            + ".",
            "",
        ]
    lines += matching_section(per_budget, preset["stage1_batch"], preset["stage2_batch"])
    for budget, summary in summaries.items():
        lines += [f"## Stage-1 budget {budget}", "", markdown_table(summary, targets, source), ""]
        lines += lead_and_cka_section(budget, evidence["lead"][budget], evidence["cka"][budget], targets)
        if charts.get(f"bars_{budget}"):
            lines += [f"![target average and source mIoU per arm, budget {budget}]({charts[f'bars_{budget}']})", ""]
    lines += ["## Target average against the stage-1 budget", ""]
    if charts.get("budget"):
        lines += [f"![target average against budget]({charts['budget']})", ""]
    r = evidence["cka_r"]
    lines += [
        "## Does similarity to the teacher on unseen styles predict mIoU?",
        "",
        f"Pearson r between CKA to the teacher and mIoU over every two-stage arm x budget x seed x target domain: "
        f"**{'n/a' if r is None else f'{r:.3f}'}** (n = {evidence['cka_n']} points). Within each target "
        "domain (arms, budgets and seeds only, so a domain's overall difficulty does not drive r): "
        + ", ".join(f"{d} {'n/a' if v is None else f'{v:.2f}'}" for d, v in evidence["cka_r_by_domain"].items())
        + ".",
        "",
    ]
    if charts.get("cka"):
        lines += [f"![CKA to the teacher against mIoU on unseen domains]({charts['cka']})", ""]
    lines += verdict_section(evidence["verdicts"], evidence["ablation_notes"])
    if notes.strip():
        lines += [notes.strip(), ""]
    lines += ["## Time per arm", "", "| budget | arm | seconds per seed (mean) |", "|---|---|---|"]
    for budget, summary in summaries.items():
        for name, row in summary.items():
            sec = row.get("seconds_per_seed")
            lines.append(f"| {budget} | {_label(name)} | {'n/a' if sec is None else f'{sec:.0f}'} |")
    lines += [
        "",
        "The teacher and frozen no-KD rows come from one budget-independent run per seed (reused at every "
        "budget), so they show the same time; KD and CWD reuse that run's teacher head.",
    ]
    if s.get("estimate"):
        est = s["estimate"]
        lines += ["", f"Estimated run time before the run: {est['seconds'] / 60:.1f} min ({est['basis']})."]
    lines += ["", "## Command and settings", "", "```", command, "```", "", "```json", _json(settings), "```", ""]
    return "\n".join(lines)


def _json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)

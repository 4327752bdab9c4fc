"""Per-budget summaries, the paper-shaped markdown table and a PIL bar chart of the reproduction's results.

The whole RESULTS.md text is bench/reproduce_markdown.py; the sweep's charts are bench/reproduce_charts.py.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from bench.reproduce_config import ARMS

_LABELS = {a.name: a.label for a in ARMS}


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(arms: dict[str, dict[str, Any]], targets: list[str], source: str) -> dict[str, dict[str, Any]]:
    """Per arm: mean and std over seeds of each domain, of the target average and of source - average."""
    summary: dict[str, dict[str, Any]] = {}
    for name, data in arms.items():
        seeds = data["seeds"]
        cols: dict[str, list[float]] = {d: [] for d in [*targets, "target_avg", source, "gap"]}
        for per in seeds.values():
            avg = statistics.fmean(per[d] for d in targets)
            for d in targets:
                cols[d].append(per[d])
            cols["target_avg"].append(avg)
            cols[source].append(per[source])
            cols["gap"].append(per[source] - avg)
        summary[name] = {d: dict(zip(("mean", "std"), _mean_std(v), strict=True)) for d, v in cols.items()}
        summary[name]["n_seeds"] = len(seeds)
        secs = list(data.get("seconds", {}).values())
        summary[name]["seconds_per_seed"] = statistics.fmean(secs) if secs else None
    return summary


def _cell(stat: dict[str, float], bold: bool = False, n: int = 2) -> str:
    # One seed has no spread: say so instead of printing a misleading "± 0.0".
    text = f"{stat['mean'] * 100:.1f} ± {stat['std'] * 100:.1f}" if n > 1 else f"{stat['mean'] * 100:.1f}"
    return f"**{text}**" if bold else text


def markdown_table(summary: dict[str, dict[str, Any]], targets: list[str], source: str) -> str:
    """Rows = arms, columns = targets, their average, the source and the in-domain minus OOD gap (mIoU %)."""
    students = [n for n in summary if n != "teacher"]
    best = max(students, key=lambda n: summary[n]["target_avg"]["mean"]) if students else None
    head = ["method", *targets, "target avg", f"source ({source})", "gap (source - avg)", "seeds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in summary.items():
        cells = [_LABELS.get(name, name)]
        n = int(row["n_seeds"])
        cells += [_cell(row[d], n=n) for d in targets]
        cells.append(_cell(row["target_avg"], bold=name == best, n=n))
        cells.append(_cell(row[source], n=n))
        cells.append(_cell(row["gap"], n=n))
        cells.append(str(n))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bar_chart(summary: dict[str, dict[str, Any]], source: str, path: Path, title: str) -> Path:
    """Grouped bars per arm: target average and source mIoU, with ±1 std whiskers."""
    names = list(summary)
    width, height = max(640, 90 * len(names) + 120), 420
    left, bottom, top = 60, 110, 40
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    plot_h = height - bottom - top
    draw.text((left, 10), title, fill="black", font=font)
    for tick in range(0, 101, 20):
        y = top + plot_h - plot_h * tick / 100
        draw.line([(left, y), (width - 20, y)], fill=(225, 225, 225))
        draw.text((left - 30, y - 6), f"{tick}", fill="black", font=font)
    draw.line([(left, top), (left, top + plot_h)], fill="black")
    draw.line([(left, top + plot_h), (width - 20, top + plot_h)], fill="black")
    series = [("target_avg", (52, 101, 164), "target avg"), (source, (230, 145, 56), f"source ({source})")]
    slot = (width - left - 40) / max(1, len(names))
    bar_w = slot * 0.35
    for i, name in enumerate(names):
        x0 = left + 10 + i * slot
        for j, (key, colour, _) in enumerate(series):
            stat = summary[name][key]
            h = plot_h * max(0.0, stat["mean"])
            bx = x0 + j * bar_w
            draw.rectangle([bx, top + plot_h - h, bx + bar_w - 2, top + plot_h], fill=colour)
            cx = bx + bar_w / 2
            lo = top + plot_h - plot_h * max(0.0, stat["mean"] - stat["std"])
            hi = top + plot_h - plot_h * min(1.0, stat["mean"] + stat["std"])
            draw.line([(cx, lo), (cx, hi)], fill="black")
        label = _LABELS.get(name, name).replace("student, no KD ", "no KD ").replace("GKD without ", "GKD w/o ")
        for k, part in enumerate(_wrap(label, 14)):
            draw.text((x0, top + plot_h + 6 + 12 * k), part, fill="black", font=font)
    lx = width - 260
    for j, (_, colour, text) in enumerate(series):
        draw.rectangle([lx + j * 120, 14, lx + j * 120 + 10, 24], fill=colour)
        draw.text((lx + j * 120 + 14, 12), text, fill="black", font=font)
    draw.text((left, height - 22), "mIoU % (mean over seeds, whiskers: ±1 std)", fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _wrap(text: str, width: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    if cur:
        lines.append(cur)
    return lines[:5]

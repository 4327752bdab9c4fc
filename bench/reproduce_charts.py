"""The sweep's two charts (matplotlib, headless): target average against budget, CKA against mIoU."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.reproduce_config import ARMS
from bench.reproduce_evidence import CkaPoint

_LABELS = {a.name: a.label for a in ARMS}
_REFERENCES = ("teacher", "none_frozen")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display on the build machine or a GPU host
    import matplotlib.pyplot as plt

    return plt


def budget_chart(summaries: dict[int, dict[str, dict[str, Any]]], path: Path, title: str) -> Path:
    """Target-average mIoU (mean ± std over seeds) per arm against the stage-1 budget; references dashed."""
    plt = _pyplot()
    budgets = sorted(summaries)
    arms = [a.name for a in ARMS if any(a.name in summaries[b] for b in budgets)]
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = plt.get_cmap("tab20").colors  # eleven arms: one distinct colour each
    for i, name in enumerate(arms):
        xs = [b for b in budgets if name in summaries[b]]
        means = [summaries[b][name]["target_avg"]["mean"] * 100 for b in xs]
        stds = [summaries[b][name]["target_avg"]["std"] * 100 for b in xs]
        style = "--" if name in _REFERENCES else "-"
        ax.errorbar(
            xs,
            means,
            yerr=stds,
            fmt=f"o{style}",
            capsize=3,
            color=colours[i % len(colours)],
            label=_LABELS.get(name, name),
        )
    if len(budgets) > 1 and budgets[0] > 0 and budgets[-1] / budgets[0] >= 10:
        ax.set_xscale("log")
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("stage-1 budget (steps per stage-1 step; every arm matched in images seen)")
    ax.set_ylabel("target average mIoU (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def cka_chart(points: list[CkaPoint], r: float | None, path: Path) -> Path:
    """Scatter of CKA to the teacher against mIoU on unseen domains, one colour per arm, size by budget."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 5))
    budgets = sorted({p.budget for p in points})
    size = {b: 20 + 60 * i / max(1, len(budgets) - 1) for i, b in enumerate(budgets)}
    for name in dict.fromkeys(p.arm for p in points):
        mine = [p for p in points if p.arm == name]
        ax.scatter(
            [p.cka for p in mine],
            [p.miou * 100 for p in mine],
            s=[size[p.budget] for p in mine],
            alpha=0.7,
            label=_LABELS.get(name, name),
        )
    r_text = "n/a (fewer than 3 points or no spread)" if r is None or math.isnan(r) else f"{r:.2f}"
    ax.set_title(
        f"two-stage arms, every target domain x budget x seed (larger marker: larger budget)\n"
        f"Pearson r = {r_text} (n = {len(points)})",
        fontsize=9,
    )
    ax.set_xlabel("linear CKA of the frozen student's final patch tokens to the teacher's")
    ax.set_ylabel("mIoU on that unseen domain (%)")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

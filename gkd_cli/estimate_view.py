"""How ``gkd submit --dry-run`` prints an estimate: one row per training stage, then totals, unknowns and notes."""

from __future__ import annotations

from rich.console import RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gkd_client import GpuHours, JobEstimate

_UNITS = ((1e18, "EFLOP"), (1e15, "PFLOP"), (1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP"))


def flops_text(value: float | None) -> str:
    """``3.2 TFLOP``; ``?`` when unknown."""
    if value is None:
        return "?"
    for scale, unit in _UNITS:
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return f"{value:.3g} FLOP"


def hours_text(hours: GpuHours) -> str:
    return "?" if hours.hours is None else f"{hours.hours:.3g}"


def estimate_views(est: JobEstimate) -> list[RenderableType]:
    """The per-stage table, the whole-job line per GPU kind, why anything is unknown, and how it was estimated."""
    kinds = [h.kind for h in est.gpu_hours]
    table = Table(title="estimate (nothing submitted)", header_style="bold")
    for column in ("stage", "images", "batch", "steps", "FLOPs/step", "total FLOPs", "peak mem/GPU"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for kind in kinds:
        table.add_column(f"GPU-h {kind}", justify="right")
    for phase in est.phases:
        memory = "?" if phase.peak_memory_gib is None else f"~{phase.peak_memory_gib:.2g} GiB"
        cells = [
            escape(phase.stage),
            "?" if phase.images is None else str(phase.images),
            str(phase.batch_size),
            "?" if phase.steps is None else str(phase.steps),
            flops_text(phase.flops_per_step),
            flops_text(phase.total_flops),
            memory,
        ]
        table.add_row(*cells, *(hours_text(h) for h in phase.gpu_hours))
    table.add_row("total", "", "", "", "", flops_text(est.total_flops), "", *(hours_text(h) for h in est.gpu_hours))
    views: list[RenderableType] = [table]
    unknown = [f"{p.stage}: {p.unknown}" for p in est.phases if p.unknown]
    unknown += [f"GPU-hours on {h.kind}: {h.reason}" for h in est.gpu_hours if h.reason]
    if unknown:
        views.append(Text("unknown:\n" + "\n".join(f"  {line}" for line in unknown), style="yellow"))
    views.append(Text("\n".join(est.notes), style="dim"))
    return views

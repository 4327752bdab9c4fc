"""How the CLI prints: rich tables for people, ``--json`` for scripts, one-line errors on stderr."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gkd_client import Artifact, DomainScore, Event, Job, Summary

console = Console()
err_console = Console(stderr=True)

STATUS_STYLES = {
    "queued": "yellow",
    "running": "cyan",
    "cancelling": "magenta",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "dim",
}


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one clear line on stderr and exit non-zero (never a traceback)."""
    first = " ".join(str(message).split())
    err_console.print(f"[bold red]error:[/] {escape(first)}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def emit_json(payload: Any) -> None:
    """Write machine-readable JSON to stdout (no colours, no wrapping)."""
    sys.stdout.write(json.dumps(payload, default=json_default, indent=2, sort_keys=True) + "\n")
    sys.stdout.flush()


def age(when: datetime | None, now: datetime | None = None) -> str:
    """Short human age: ``42s``, ``5m``, ``3h``, ``2d``."""
    if when is None:
        return "-"
    now = now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = max(0, int((now - when).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s`` or ``-``."""
    if seconds is None:
        return "-"
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def status_text(status: str) -> str:
    style = STATUS_STYLES.get(status, "white")
    return f"[{style}]{escape(status)}[/]"


def jobs_table(jobs: list[Job]) -> Table:
    """The job list: id, name, status, phase, progress, method, age."""
    table = Table(show_lines=False, header_style="bold")
    for column in ("id", "name", "status", "phase", "progress", "method", "age"):
        table.add_column(column, no_wrap=column in ("id", "status"))
    for job in jobs:
        table.add_row(
            escape(job.id),
            escape(job.name or ""),
            status_text(job.status),
            escape(job.phase or "-"),
            f"{job.progress * 100:.0f}%",
            escape(job.method or "-"),
            age(job.created_at),
        )
    return table


def job_table(job: Job) -> Table:
    """Key/value view of one job."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, str]] = [
        ("id", job.id),
        ("name", job.name or ""),
        ("status", status_text(job.status)),
        ("phase", job.phase or "-"),
        ("progress", f"{job.progress * 100:.1f}%"),
        ("eta", duration(job.eta_s)),
        ("attempt", f"{job.attempt}" + (f"/{job.max_attempts}" if job.max_attempts else "")),
        ("method", job.method or "-"),
        ("created", job.created_at.isoformat() if job.created_at else "-"),
        ("started", job.started_at.isoformat() if job.started_at else "-"),
        ("finished", job.finished_at.isoformat() if job.finished_at else "-"),
    ]
    if job.error_reason or job.error_detail:
        rows.append(("error", f"[red]{escape(job.error_reason or '')}[/] {escape(job.error_detail or '')}".strip()))
    for key, value in rows:
        table.add_row(key, value if key in ("status", "error") else escape(value))
    return table


def _miou(score: DomainScore | None) -> str:
    return "-" if score is None or score.miou is None else f"{score.miou * 100:.1f}"


def scores_table(summary: Summary, title: str = "mIoU (%) per domain") -> Table | None:
    """Student row plus reference rows, one column per domain; None when there are no scores."""
    domains: list[str] = list(summary.student)
    for ref in summary.references.values():
        domains += [d for d in ref if d not in domains]
    if not domains:
        return None
    table = Table(title=title, header_style="bold")
    table.add_column("model")
    for domain in domains:
        table.add_column(escape(domain), justify="right")
    if summary.student:
        table.add_row("[bold]student[/]", *(_miou(summary.student.get(d)) for d in domains))
    for name, ref in summary.references.items():
        table.add_row(escape(name), *(_miou(ref.get(d)) for d in domains))
    return table


def results_table(results: dict[str, DomainScore]) -> Table:
    """Per-domain metrics of one evaluation."""
    table = Table(title="evaluation", header_style="bold")
    for column in ("domain", "mIoU (%)", "pixel acc (%)", "images"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    for domain, score in results.items():
        acc = "-" if score.pixel_accuracy is None else f"{score.pixel_accuracy * 100:.1f}"
        table.add_row(escape(domain), _miou(score), acc, "-" if score.images is None else str(score.images))
    return table


def events_table(events: list[Event]) -> Table:
    table = Table(header_style="bold")
    for column in ("time", "type", "attempt", "message"):
        table.add_column(column)
    for event in events:
        table.add_row(
            event.time.isoformat(timespec="seconds") if event.time else "-",
            escape(event.type),
            "-" if event.attempt is None else str(event.attempt),
            escape(event.message),
        )
    return table


def artifacts_table(artifacts: list[Artifact]) -> Table:
    table = Table(header_style="bold")
    for column in ("name", "kind", "size", "sha256"):
        table.add_column(column)
    for item in artifacts:
        table.add_row(escape(item.name), escape(item.kind), human_bytes(item.size), (item.sha256 or "-")[:16])
    return table


def human_bytes(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"  # pragma: no cover


def plan_table(plan: Any) -> Table | None:
    """The job's training plan (GET /v1/jobs/{id} ``plan``): steps per stage, from epochs where given."""
    if not isinstance(plan, list) or not plan:
        return None
    table = Table(title="plan", title_justify="left")
    for column in ("stage", "images", "batch", "epochs", "steps"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for row in plan:
        cells = [_plan_cell(row.get(key)) for key in ("images", "batch_size", "epochs", "steps")]
        table.add_row(escape(str(row.get("stage"))), *cells)
    return table


def _plan_cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"

"""How the CLI prints: rich tables for people, ``--json`` for scripts, one-line errors on stderr."""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import UTC, datetime
from typing import Any, NoReturn

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table

from gkd_client import Artifact, Dataset, DatasetReport, DomainScore, Event, Job, Summary

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


def emit_line(text: str) -> None:
    """One plain line on stdout, never wrapped or styled, for values a script reads (a URL)."""
    sys.stdout.write(text + "\n")
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
        *([("waiting", job.waiting_reason)] if job.waiting_reason else []),
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
    marked = {"status", "error", "warning"}
    for role in ("teacher", "student"):
        part = (job.lineage or {}).get(role)
        if isinstance(part, dict):
            licence = part.get("licence") or ("none inherited" if part.get("commercial") == "n/a" else "unknown")
            use = part.get("commercial")
            rows.append((f"{role} weights", f"{part.get('weights')}: {licence} (commercial use: {use})"))
    for warning in (job.lineage or {}).get("warnings") or []:
        rows.append(("warning", f"[yellow]{escape(str(warning))}[/]"))
    for key, value in rows:
        table.add_row(key, value if key in marked else escape(value))
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
    for kind, scores in summary.deployed.items():  # the shipped files, run by onnxruntime
        table.add_row(f"student ({escape(kind)})", *(_deployed_cell(summary, kind, d, scores) for d in domains))
    for name, ref in summary.references.items():
        table.add_row(escape(name), *(_miou(ref.get(d)) for d in domains))
    return table


def _deployed_cell(summary: Summary, kind: str, domain: str, scores: dict[str, DomainScore]) -> str:
    """A shipped file's mIoU on a domain, with its difference to PyTorch when that exceeds the tolerance."""
    text = _miou(scores.get(domain))
    student = summary.student.get(domain)
    return text + _drift(student.deployed.get(kind) if student is not None else None)


def _drift(check: Any) -> str:
    """`` (+0.42)`` in red where a shipped file's parity check is past the tolerance, else nothing."""
    if isinstance(check, dict) and check.get("within_tolerance") is False:
        return f" [red]({float(check.get('diff_points', 0.0)):+.2f})[/]"
    return ""


def results_table(results: dict[str, DomainScore]) -> Table:
    """Per-domain metrics of one evaluation, with a column per shipped file (ONNX, INT8) scored beside it."""
    table = Table(title="evaluation", header_style="bold")
    kinds = sorted({kind for score in results.values() for kind in score.deployed})
    for column in ("domain", "mIoU (%)", *(f"{kind} (%)" for kind in kinds), "pixel acc (%)", "images"):
        table.add_column(column, justify="left" if column == "domain" else "right")
    for domain, score in results.items():
        acc = "-" if score.pixel_accuracy is None else f"{score.pixel_accuracy * 100:.1f}"
        shipped = [_parity_cell(score.deployed.get(kind)) for kind in kinds]
        table.add_row(escape(domain), _miou(score), *shipped, acc, "-" if score.images is None else str(score.images))
    return table


def _parity_cell(check: Any) -> str:
    """A shipped file's mIoU, with its difference from PyTorch in red when past the tolerance."""
    if not isinstance(check, dict) or check.get("miou") is None:
        return "-"
    return f"{float(check['miou']) * 100:.1f}" + _drift(check)


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


# ----- datasets ------------------------------------------------------------------------------

DATASET_STYLES = {"valid": "green", "invalid": "red", "validating": "yellow"}


def dataset_status(status: str) -> str:
    return f"[{DATASET_STYLES.get(status, 'white')}]{escape(status)}[/]"


def _split_counts(report: DatasetReport) -> str:
    unit = "pairs" if report.labels else "images"
    return ", ".join(f"{name} {s.pairs if report.labels else s.images}" for name, s in report.splits.items()) + (
        f" {unit}" if report.splits else "-"
    )


def datasets_table(datasets: list[Dataset]) -> Table:
    """The dataset list: name, layout, status, labels, size per split, problems, last validation."""
    table = Table(header_style="bold")
    for column in ("name", "layout", "status", "labels", "splits", "problems", "validated"):
        right = column == "problems"
        table.add_column(column, no_wrap=column in ("name", "status"), justify="right" if right else "left")
    for ds in datasets:
        table.add_row(
            escape(ds.name),
            escape(ds.layout),
            dataset_status(ds.status),
            "yes" if ds.report.labels else "images only",
            escape(_split_counts(ds.report)),
            str(ds.report.total_problems),
            age(ds.updated_at),
        )
    return table


def value_ranges(values: list[int]) -> str:
    """``[0, 1, 2, 3, 7, 255]`` -> ``0-3, 7, 255``."""
    runs: list[str] = []
    ordered = sorted(set(values))
    start = prev = None
    for value in [*ordered, None]:
        if value is not None and prev is not None and value == prev + 1:
            prev = value
            continue
        if start is not None:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = value
    return ", ".join(runs) or "-"


def _size(stats: dict[str, Any] | None, axis: str) -> str:
    part = (stats or {}).get(axis)
    if not isinstance(part, dict):
        return "-"
    low, high, median = part.get("min"), part.get("max"), part.get("median")
    text = f"{low}" if low == high else f"{low}-{high}"
    return text if median is None or low == high else f"{text} (median {median:g})"


def dataset_views(ds: Dataset) -> list[RenderableType]:
    """One dataset: its facts, then the validation report as tables (splits, label values, sizes, problems)."""
    report = ds.report
    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="bold")
    facts.add_column()
    rows = [
        ("name", escape(ds.name)),
        ("status", dataset_status(ds.status)),
        ("layout", escape(ds.layout) + ("" if report.labels else " (images only)")),
        ("uri", escape(ds.uri)),
        ("options", escape(", ".join(f"{k}={v}" for k, v in ds.options.items())) or "-"),
        ("classes", escape(", ".join(ds.classes or report.classes or [])) or "-"),
        ("validated", ds.updated_at.isoformat(timespec="seconds") if ds.updated_at else "-"),
    ]
    if ds.validating:  # the server answered before its validation of this (large) set ended
        rows[-1] = ("validated", f"not yet: validating since {escape(str(report.raw.get('started_at') or '-'))}")
    if report.labels and report.label_sample:
        rows.append(("label sample", f"at most {report.label_sample} label files decoded per split"))
    for key, value in rows:
        facts.add_row(key, value)
    views: list[RenderableType] = [facts]

    if report.splits:
        splits = Table(title="images per split", header_style="bold")
        columns = ["split", "images"]
        columns += ["masks", "pairs", "masks checked"] if report.labels else ["width (px)", "height (px)"]
        for column in columns:
            splits.add_column(column, justify="left" if column == "split" else "right")
        for name, counts in report.splits.items():
            if report.labels:
                cells = [str(counts.masks), str(counts.pairs), str(counts.masks_checked)]
            else:
                cells = [_size(counts.image_size, "width"), _size(counts.image_size, "height")]
            splits.add_row(escape(name), str(counts.images), *cells)
        views.append(splits)

    if report.labels and any(c.label_values for c in report.splits.values()):
        labels = Table(title="label values seen in the decoded masks", header_style="bold")
        for column in ("split", "values", "count"):
            labels.add_column(column, justify="right" if column == "count" else "left")
        for name, counts in report.splits.items():
            labels.add_row(escape(name), value_ranges(counts.label_values), str(len(set(counts.label_values))))
        views.append(labels)

    if report.problems or report.problem_counts:
        problems = Table(title=f"problems ({report.total_problems})", header_style="bold")
        for column in ("kind", "split", "file", "detail"):
            problems.add_column(column, overflow="fold")
        for problem in report.problems[:50]:
            problems.add_row(
                escape(problem.kind), escape(problem.split or "-"), escape(problem.name or "-"), escape(problem.detail)
            )
        views.append(problems)
        hidden = report.total_problems - min(50, len(report.problems))
        if hidden > 0:
            per_kind = ", ".join(f"{n} {k}" for k, n in report.problem_counts.items())
            views.append(f"[dim]{hidden} more not shown (all problems: {escape(per_kind)})[/]")
    return views


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

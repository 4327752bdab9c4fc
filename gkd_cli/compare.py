"""``gkd compare``: several jobs' per-domain scores side by side.

Per domain, one row per job's student, then the reference rows (teacher, student without distillation...).
A reference that has the same score in several jobs (the same teacher, say) is shown once, naming every
job it belongs to. When a job's summary reports the exported ONNX model's parity per domain (``onnx``),
an "ONNX parity" column shows it; otherwise there is no such column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.markup import escape
from rich.table import Table

from gkd_client import DomainScore, Job


@dataclass
class CompareRow:
    """One model on one domain: a job's student, or a reference row shared by one or more jobs."""

    domain: str
    model: str
    kind: str  # "student" | "reference"
    job_ids: list[str]
    miou: float | None
    onnx: Any = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "domain": self.domain,
            "model": self.model,
            "kind": self.kind,
            "jobs": self.job_ids,
            "miou": self.miou,
        }
        if self.onnx is not None:
            body["onnx"] = self.onnx
        return body


@dataclass
class Comparison:
    """The jobs compared, their domains (in first-seen order) and the rows per domain."""

    jobs: list[Job]
    domains: list[str] = field(default_factory=list)
    rows: list[CompareRow] = field(default_factory=list)

    @property
    def has_onnx(self) -> bool:
        return any(row.onnx is not None for row in self.rows)

    @property
    def without_scores(self) -> list[Job]:
        """Jobs whose summary holds no score yet (still running, failed, ...)."""
        return [j for j in self.jobs if not j.summary.student and not j.summary.references]

    def to_json(self) -> dict[str, Any]:
        return {
            "jobs": [
                {"id": j.id, "name": j.name, "status": j.status, "method": j.method, "label": self.label(j.id)}
                for j in self.jobs
            ],
            "domains": self.domains,
            "rows": [row.to_json() for row in self.rows],
        }

    def label(self, job_id: str) -> str:
        """A job's name, with a short id when two compared jobs share the name (or it has none)."""
        job = next(j for j in self.jobs if j.id == job_id)
        same = sum(1 for j in self.jobs if j.name == job.name)
        if job.name and same == 1:
            return job.name
        return f"{job.name or 'job'} ({job.id[:8]})"


def _domains(jobs: list[Job]) -> list[str]:
    seen: list[str] = []
    for job in jobs:
        for table in (job.summary.student, *job.summary.references.values()):
            seen += [d for d in table if d not in seen]
    return seen


def _same(a: float | None, b: float | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and abs(a - b) < 5e-5)


def compare(jobs: list[Job]) -> Comparison:
    """Build the per-domain comparison of ``jobs`` (their order is kept)."""
    result = Comparison(jobs=jobs, domains=_domains(jobs))
    for domain in result.domains:
        for job in jobs:
            score = job.summary.student.get(domain)
            if score is not None:
                result.rows.append(CompareRow(domain, "student", "student", [job.id], score.miou, score.onnx))
        shared: list[CompareRow] = []
        for job in jobs:
            for name, table in job.summary.references.items():
                ref: DomainScore | None = table.get(domain)
                if ref is None:
                    continue
                match = next((r for r in shared if r.model == name and _same(r.miou, ref.miou)), None)
                if match is not None:
                    match.job_ids.append(job.id)
                else:
                    shared.append(CompareRow(domain, name, "reference", [job.id], ref.miou))
        result.rows += shared
    return result


def parity_text(value: Any) -> str:
    """ONNX parity as reported: a number, a yes/no, or an object of named figures."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "ok" if value else "differs"
    if isinstance(value, int | float):
        return f"{value:.3g}"
    if isinstance(value, dict) and isinstance(value.get("diff_points"), int | float):  # the server's own shape
        text = f"mIoU {_miou(_as_float(value.get('miou')))}, {value['diff_points']:+.2f} points"
        return text + (", beyond tolerance" if value.get("within_tolerance") is False else "")
    if isinstance(value, dict):
        parts = []
        for key, item in value.items():
            if key == "miou" and isinstance(item, int | float):
                parts.append(f"mIoU {item * 100 if item <= 1 else item:.1f}")
            elif isinstance(item, bool):
                parts.append(f"{key} {'yes' if item else 'no'}")
            elif isinstance(item, int | float):
                parts.append(f"{key} {item:.3g}")
            else:
                parts.append(f"{key} {item}")
        return ", ".join(parts) or "-"
    return str(value)


def _as_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _miou(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}"


def comparison_table(result: Comparison) -> Table:
    """Domain, model, job(s), mIoU (%), and ONNX parity when any job reports it; best student in bold."""
    table = Table(title="mIoU (%) per domain", header_style="bold")
    table.add_column("domain")
    table.add_column("model")
    table.add_column("job")
    table.add_column("mIoU (%)", justify="right")
    if result.has_onnx:
        table.add_column("ONNX parity")
    for domain in result.domains:
        rows = [r for r in result.rows if r.domain == domain]
        students = [r.miou for r in rows if r.kind == "student" and r.miou is not None]
        best = max(students) if len(students) > 1 else None
        for index, row in enumerate(rows):
            miou = _miou(row.miou)
            if row.kind == "student" and best is not None and row.miou == best:
                miou = f"[bold green]{miou}[/]"
            model = "[bold]student[/]" if row.kind == "student" else f"[dim]{escape(row.model)}[/]"
            cells = [
                escape(domain) if index == 0 else "",
                model,
                escape(", ".join(result.label(j) for j in row.job_ids)),
                miou,
            ]
            if result.has_onnx:
                cells.append(escape(parity_text(row.onnx)) if row.kind == "student" else "")
            table.add_row(*cells, end_section=index == len(rows) - 1)
    return table

"""Every job's robustness report: what the student carries of the teacher's lead, domain by domain.

``report.json`` puts the student's per-domain mIoU beside every reference row the job ran and every
shipped file; when both the teacher and the no-KD student (``student_frozen``) rows exist it gives the
fraction of the teacher's lead over no-KD that the student carries, per domain and on the target
average; when the teacher ran, the linear CKA of each student-encoder model to it per domain.
``report.png`` draws the same rows as grouped bars (matplotlib, headless Agg backend).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPORT_VERSION = 1
MIN_LEAD_POINTS = 0.5
"""Below this teacher lead over no-KD (mIoU points) a carried fraction is noise, so none is given."""


def lead_fraction(student: float, teacher: float, no_kd: float) -> float | None:
    """(student - no-KD) / (teacher - no-KD): 0 carries nothing of the lead, 1 all of it; None if no lead."""
    lead = teacher - no_kd
    if lead * 100.0 < MIN_LEAD_POINTS:
        return None
    return (student - no_kd) / lead


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def build_report(
    *,
    rows: Mapping[str, Mapping[str, float]],
    targets: list[str],
    source: str | None,
    similarity: Mapping[str, Mapping[str, float]] | None = None,
    method: str = "",
) -> dict[str, Any]:
    """The report as JSON-ready data; ``rows`` maps a model (student, references, shipped files) to domain -> mIoU."""
    domains = [d for d in [*targets, source] if d is not None and any(d in per for per in rows.values())]
    student = rows.get("student", {})
    teacher, no_kd = rows.get("teacher"), rows.get("student_frozen")
    lead: dict[str, Any] | None = None
    if teacher is not None and no_kd is not None:
        per_domain = {
            d: lead_fraction(student[d], teacher[d], no_kd[d])
            for d in domains
            if d in student and d in teacher and d in no_kd
        }
        avg = {
            name: _mean([per[d] for d in targets if d in per])
            for name, per in (("s", student), ("t", teacher), ("n", no_kd))
        }
        average = None
        if all(v is not None for v in avg.values()):
            average = lead_fraction(avg["s"], avg["t"], avg["n"])  # type: ignore[arg-type]
        lead = {"per_domain": per_domain, "target_average": average, "min_lead_points": MIN_LEAD_POINTS}
    averages = {name: _mean([per[d] for d in targets if d in per]) for name, per in rows.items()}
    return {
        "version": REPORT_VERSION,
        "method": method,
        "domains": domains,
        "targets": targets,
        "source": source,
        "miou": {name: {d: per[d] for d in domains if d in per} for name, per in rows.items()},
        "target_average": averages,
        "teacher_lead_carried": lead,
        "cka_to_teacher": {name: dict(per) for name, per in (similarity or {}).items()},
        "notes": {
            "teacher_lead_carried": "(student - no-KD) / (teacher - no-KD); no-KD is the student_frozen reference",
            "cka_to_teacher": "linear CKA (Kornblith et al., ICML 2019) of final patch tokens to the frozen teacher's",
        },
    }


def write_report(out_dir: Path, report: dict[str, Any]) -> dict[str, Path]:
    """Write ``report.json`` and ``report.png`` into ``out_dir``; returns artifact name -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, sort_keys=True))
    return {"report": json_path, "report_chart": _chart(out_dir / "report.png", report)}


def _chart(path: Path, report: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on workers
    import matplotlib.pyplot as plt

    domains: list[str] = report["domains"]
    models = list(report["miou"])
    cka = report["cka_to_teacher"]
    panels = 2 if cka else 1
    fig, axes = plt.subplots(1, panels, figsize=(max(6.0, 1.2 * len(domains) * panels + 3), 4), squeeze=False)
    width = 0.8 / max(1, len(models))
    ax = axes[0][0]
    for i, model in enumerate(models):
        values = [report["miou"][model].get(d, float("nan")) * 100 for d in domains]
        ax.bar([x + i * width for x in range(len(domains))], values, width, label=model)
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(domains))], domains, rotation=20, ha="right")
    ax.set_ylabel("mIoU (%)")
    lead = report.get("teacher_lead_carried") or {}
    carried = lead.get("target_average")
    title = "per-domain mIoU" + (
        f" (carries {carried * 100:.0f}% of the teacher's lead)" if carried is not None else ""
    )
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    if cka:
        ax2 = axes[0][1]
        names = list(cka)
        w2 = 0.8 / len(names)
        for i, name in enumerate(names):
            ax2.bar(
                [x + i * w2 for x in range(len(domains))],
                [cka[name].get(d, float("nan")) for d in domains],
                w2,
                label=name,
            )
        ax2.set_xticks([x + 0.4 - w2 / 2 for x in range(len(domains))], domains, rotation=20, ha="right")
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("linear CKA to the teacher")
        ax2.set_title("feature similarity to the teacher", fontsize=10)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

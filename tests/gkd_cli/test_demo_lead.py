"""The demo's closing line: the fraction of the teacher's lead the student carries, from the job's report."""

from __future__ import annotations

from gkd_cli.demo import _lead_line
from gkd_client.models import Job


def _job(report: object) -> Job:
    summary = {"student": {"synth-fog/val": {"miou": 0.3}}, "report": report}
    return Job.from_obj({"id": "j1", "status": "succeeded", "summary": summary})


def test_the_fraction_is_printed_as_a_percentage() -> None:
    line = _lead_line(_job({"teacher_lead_carried": {"target_average": 0.437, "per_domain": {}}}))
    assert "closes 44% of the gap" in line


def test_no_fraction_says_why() -> None:
    for report in (None, {}, {"teacher_lead_carried": None}, {"teacher_lead_carried": {"target_average": None}}):
        assert "none to measure" in _lead_line(_job(report))

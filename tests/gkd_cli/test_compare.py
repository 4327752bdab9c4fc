"""``gkd compare``: per-domain scores of several jobs, from real rows in a running API server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from gkd_cli.cli import app
from gkd_cli.compare import compare, parity_text
from gkd_client import Client, Job
from tests.support.live_api import SUMMARY, LiveServer, spec
from worker.parity import fold_parity, parity

Gkd = Callable[..., Result]

KD_SUMMARY: dict[str, Any] = {
    "student": {"synth-fog": {"miou": 0.371}, "synth-night": {"miou": 0.402}},
    "references": {
        "teacher": {"synth-fog": {"miou": 0.523}, "synth-night": {"miou": 0.47}},  # the same teacher
        "student_frozen": {"synth-fog": {"miou": 0.25}, "synth-night": {"miou": 0.2}},  # another run
    },
}
ONNX_SUMMARY: dict[str, Any] = {
    "student": {
        "synth-fog": {"miou": 0.398, "onnx": parity(0.398, 0.3979)},
        "synth-night": {"miou": 0.31, "onnx": parity(0.31, 0.3101)},
    },
    "references": {},
}


@pytest.fixture
def gkd(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Gkd:
    monkeypatch.setenv("GKD_URL", server.url)
    monkeypatch.setenv("GKD_API_KEY", server.api_key)
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


@pytest.fixture(scope="module")
def jobs(server: LiveServer) -> dict[str, str]:
    client = Client(server.url, server.api_key)
    ids: dict[str, str] = {}
    for key, summary in (("gkd", SUMMARY), ("kd", KD_SUMMARY), ("onnx", ONNX_SUMMARY)):
        job = client.submit_job(spec(f"cmp-{key}", method=key if key in ("gkd", "kd") else "gkd"))
        server.start(job.id)
        server.succeed(job.id, {}, summary=summary)
        ids[key] = job.id
    ids["queued"] = client.submit_job(spec("cmp-queued")).id
    return ids


def _rows(stdout: str, domain_rows: str) -> list[str]:
    return [line for line in stdout.splitlines() if domain_rows in line]


def test_table_has_a_student_row_per_job_and_shared_references_once(gkd: Gkd, jobs: dict[str, str]) -> None:
    result = gkd("compare", jobs["gkd"], jobs["kd"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "cmp-gkd" in out and "cmp-kd" in out and "ONNX parity" not in out
    assert "41.2" in out and "37.1" in out and "33.5" in out and "40.2" in out
    teacher = [line for line in out.splitlines() if "teacher" in line]
    assert len(teacher) == 2  # one per domain, shared by both jobs
    assert all("cmp-gkd, cmp-kd" in line for line in teacher)
    frozen = [line for line in out.splitlines() if "student_frozen" in line]
    assert len(frozen) == 4  # different scores: one row per job and domain


def test_onnx_parity_column_only_when_a_summary_has_it(gkd: Gkd, jobs: dict[str, str]) -> None:
    result = gkd("compare", jobs["gkd"], jobs["onnx"], jobs["queued"])
    assert result.exit_code == 0, result.output
    assert "ONNX parity" in result.stdout
    assert "mIoU 39.8, -0.01 points" in result.stdout
    assert "cmp-queued: no scores yet (queued)" in result.stdout

    body = json.loads(gkd("compare", jobs["gkd"], jobs["onnx"], "--json").stdout)
    assert [j["id"] for j in body["jobs"]] == [jobs["gkd"], jobs["onnx"]]
    assert body["domains"] == ["synth-fog", "synth-night"]
    fog = [r for r in body["rows"] if r["domain"] == "synth-fog" and r["kind"] == "student"]
    assert [(r["jobs"], r["miou"]) for r in fog] == [([jobs["gkd"]], 0.412), ([jobs["onnx"]], 0.398)]
    assert "onnx" not in fog[0] and fog[1]["onnx"] == parity(0.398, 0.3979)


def test_errors_are_one_line(gkd: Gkd, jobs: dict[str, str]) -> None:
    missing = gkd("compare", jobs["gkd"], "00000000-0000-0000-0000-000000000000")
    assert missing.exit_code == 1 and "404" in missing.stderr and "Traceback" not in missing.output
    nothing = gkd("compare", jobs["queued"])
    assert nothing.exit_code == 1 and "has per-domain scores yet" in nothing.stderr


def test_same_names_get_short_ids_and_parity_forms() -> None:
    a = Job.from_obj({"id": "aaaaaaaa-1", "name": "run", "status": "succeeded", "summary": SUMMARY})
    b = Job.from_obj(
        {
            "id": "bbbbbbbb-2",
            "name": "run",
            "status": "succeeded",
            "summary": {"student": {"synth-fog": {"miou": 0.5}}, "onnx": {"synth-fog": 0.9991}},
        }
    )
    result = compare([a, b])
    assert result.label(a.id) == "run (aaaaaaaa)" and result.label(b.id) == "run (bbbbbbbb)"
    assert result.has_onnx and next(r for r in result.rows if r.job_ids == [b.id]).onnx == 0.9991
    assert parity_text(True) == "ok" and parity_text(False) == "differs" and parity_text(1e-6) == "1e-06"
    assert parity_text({"match": True, "miou": 41.0}) == "match yes, mIoU 41.0"
    assert parity_text(parity(0.5, 0.49)) == "mIoU 49.0, -1.00 points, beyond tolerance"


def test_status_shows_the_shipped_files_rows_and_flags_drift(gkd: Gkd, server: LiveServer) -> None:
    student: dict[str, Any] = {"synth-fog": {"miou": 0.412}}
    deployed = {"onnx": {"synth-fog": {"miou": 0.412}}, "int8": {"synth-fog": {"miou": 0.405}}}
    fold_parity(student, deployed)
    job = Client(server.url, server.api_key).submit_job(spec("cmp-deployed"))
    server.start(job.id)
    server.succeed(job.id, {}, summary={"student": student, "references": {}, "deployed": deployed})
    lines = gkd("status", job.id).stdout.splitlines()
    assert any("student (onnx)" in line and "41.2" in line and "(" not in line.split("41.2")[1] for line in lines)
    assert any("student (int8)" in line and "40.5 (-0.70)" in line for line in lines)

"""bench/gpu_check.py does not rot: the CPU smoke run gives every section ok, failures and a spent
budget are recorded without stopping the run, out-of-memory halves the batch, and the script pulls
in none of the server stack (the GPU host has none of it installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from bench.gpu_check import SECTION_NAMES, run_sections
from bench.gpu_check_plan import Context, Section, halving_batch, smoke_plan
from bench.gpu_check_sections import FORBIDDEN_MODULES, junit_counts
from gkd_core.engine.speed import SpeedOptions, record_defaults

REPO = Path(__file__).resolve().parents[2]
OPTION_SECTIONS = [n for n in SECTION_NAMES if n.startswith("option_")]


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


def test_smoke_run_gives_every_section_ok(tmp_path: Path) -> None:
    out = tmp_path / "gpu-check"
    proc = _run("bench/gpu_check.py", "--smoke", "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((out / "gpu_check.json").read_text())
    sections = report["sections"]
    assert list(sections) == list(SECTION_NAMES)
    failed = {name: s.get("error") or s.get("note") for name, s in sections.items() if s["status"] != "ok"}
    assert not failed
    assert report["meta"]["smoke"] is True and report["meta"]["torch"] == torch.__version__
    # The figures each section exists for are there.
    assert sections["gpu_tests"]["collected"] >= 1  # collected only: no CUDA here
    assert sections["matmul_peak"]["peak_tflops"] > 0
    for key in ("stage1_1b", "stage1_1a"):
        s = sections[key]
        assert s["ms_per_step"] > 0 and s["ratio_to_bare"] > 0 and s["mfu"] > 0 and s["flops_per_step"] > 0
    assert sections["stage1_1a"]["student_patch"] == sections["stage1_1a"]["teacher_patch"] == 14
    assert sections["stage1_1b"]["student_patch"] == sections["stage1_1b"]["teacher_patch"] == 16
    assert set(sections["stage2_heads"]["per_head"]) == set(sections["stage2_heads"]["heads"])
    assert sections["sliding_window_eval"]["images_per_s"] > 0
    assert sections["checkpoint_resume"]["max_rel_diff"] <= sections["checkpoint_resume"]["tolerance"]
    pipeline = sections["input_pipeline"]
    assert set(pipeline["sets"]) == {"1a", "1b", "stage2"} and min(pipeline["images_per_s_per_core"].values()) > 0
    # Cores per GPU are set against the stage-1 rates this run measured, not an estimate.
    assert pipeline["gpu_rate_source"] == "measured here"
    for key in ("1a", "1b"):
        assert pipeline["sets"][key]["gpu_images_per_s"] == sections[f"stage1_{key}"]["images_per_s"]
        paths = {k: v for k, v in pipeline["sets"][key].items() if isinstance(v, dict) and "per_core" in v}
        best = max(v["per_core"] for k, v in paths.items() if k != "prepared_at_training_size")
        assert pipeline["cores_per_gpu"][key] == pytest.approx(sections[f"stage1_{key}"]["images_per_s"] / best)
    for name in OPTION_SECTIONS:
        for decision in sections[name]["decisions"]:
            assert decision["faster"] in decision["median_ms"], name
    assert {d["option"] for d in report["options"]} == {"fused AdamW", "SDPA backend", "channels-last", "torch.compile"}
    assert sections["import_hygiene"]["forbidden_loaded"] == []
    # Toy sizes decide no training default; the same report at real sizes would file the CPU's row.
    assert "speed defaults: nothing filed" in proc.stdout
    real = {**report, "meta": {**report["meta"], "smoke": False}}
    assert record_defaults(real, tmp_path / "speed.json") == ["cpu"]
    row = json.loads((tmp_path / "speed.json").read_text())["devices"]["cpu"]
    SpeedOptions(**row["options"])
    assert any(why.startswith("compile: timed with backend 'eager'") for why in row["measured"]["why"])
    assert {why.split(":")[0] for why in row["measured"]["why"]} == {
        "fused_adamw",
        "attention",
        "channels_last",
        "compile",
    }
    # The printed table names every section, and the same report is on disk.
    text = (out / "gpu_check.txt").read_text()
    assert all(name in proc.stdout and name in text for name in SECTION_NAMES)
    assert "device" in proc.stdout.splitlines()[1] and "torch" in proc.stdout.splitlines()[2]


def test_importing_the_script_pulls_no_server_stack() -> None:
    code = "import json, sys; import bench.gpu_check; print(json.dumps(sorted(sys.modules)))"
    proc = _run("-c", code, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    loaded = {name.split(".")[0] for name in json.loads(proc.stdout.splitlines()[-1])}
    assert not loaded & {*FORBIDDEN_MODULES, "onnx", "onnxruntime", "pydantic"}


def test_runs_as_a_module_with_one_section(tmp_path: Path) -> None:
    proc = _run("-m", "bench.gpu_check", "--smoke", "--only", "import_hygiene", "--out", str(tmp_path), timeout=120)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert list(report["sections"]) == ["import_hygiene"]


def _ctx(tmp_path: Path, budget: float = 60.0) -> Context:
    return Context(plan=smoke_plan(), device=torch.device("cpu"), deadline=time.monotonic() + budget, out=tmp_path)


def test_a_failing_section_is_recorded_and_the_rest_still_run(tmp_path: Path) -> None:
    def broken(ctx: Context, rec: dict[str, Any]) -> str:
        rec["partial"] = 1
        raise ValueError("boom")

    def fine(ctx: Context, rec: dict[str, Any]) -> str:
        rec["figure"] = 2
        return "fine"

    results: dict[str, Any] = {}
    seen: list[str] = []
    run_sections(_ctx(tmp_path), [Section("a", broken, 0), Section("b", fine, 0)], results, seen.append)
    assert seen == ["a", "b"]
    assert results["a"]["status"] == "failed" and results["a"]["partial"] == 1
    assert results["a"]["error"] == "ValueError: boom" and "raise ValueError" in results["a"]["traceback"]
    assert results["b"]["status"] == "ok" and results["b"]["figure"] == 2 and results["b"]["summary"] == "fine"


def test_a_spent_budget_skips_the_remaining_sections_with_a_note(tmp_path: Path) -> None:
    def fine(ctx: Context, rec: dict[str, Any]) -> str:
        return "ran"

    results: dict[str, Any] = {}
    sections = [Section("costly", fine, 30), Section("always", fine, float("-inf"))]
    run_sections(_ctx(tmp_path, budget=-1.0), sections, results)
    assert results["costly"]["status"] == "skipped" and "time budget" in results["costly"]["note"]
    assert results["always"]["status"] == "ok"


def test_out_of_memory_halves_the_batch_and_is_recorded() -> None:
    def run(batch: int) -> dict[str, int]:
        if batch > 8:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory at batch {batch}")
        return {"batch": batch}

    rec: dict[str, Any] = {}
    assert halving_batch(rec, 32, run, torch.device("cpu")) == {"batch": 8}
    assert [r["batch"] for r in rec["oom_retries"]] == [32, 16]


def test_other_errors_are_not_retried() -> None:
    def run(batch: int) -> None:
        raise ValueError("not memory")

    rec: dict[str, Any] = {}
    with pytest.raises(ValueError, match="not memory"):
        halving_batch(rec, 32, run, torch.device("cpu"))
    assert "oom_retries" not in rec


def test_junit_report_gives_counts_and_outcomes(tmp_path: Path) -> None:
    (tmp_path / "test_three.py").write_text(
        "import pytest\n\n"
        "def test_ok():\n    pass\n\n"
        "def test_bad():\n    assert False\n\n"
        "@pytest.mark.skip(reason='no')\ndef test_skipped():\n    pass\n"
    )
    xml = tmp_path / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_three.py", "--junitxml", str(xml)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout
    counts = junit_counts(xml)
    assert {k: counts[k] for k in ("collected", "passed", "failed", "errors", "skipped")} == {
        "collected": 3, "passed": 1, "failed": 1, "errors": 0, "skipped": 1,
    }  # fmt: skip
    assert sorted(counts["tests"].values()) == ["failed", "passed", "skipped"]


def test_import_hygiene_blames_what_we_imported_not_what_our_dependencies_import(tmp_path: Path) -> None:
    from bench.gpu_check_sections import _loaded_by, section_import_hygiene

    rec: dict[str, Any] = {}
    with pytest.raises(RuntimeError, match="server-stack modules were imported"):
        section_import_hygiene(_ctx(tmp_path), rec)  # this pytest process loaded boto3 (the S3 test server)
    assert "boto3" in rec["forbidden_loaded"] and rec["forbidden_loaded_by_dependencies"] == []
    assert "httpx" in _loaded_by(frozenset({"httpx"}))  # a dependency's own import would be subtracted

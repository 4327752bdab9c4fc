"""The ``gkd`` job commands against a running API server, as a user would type them."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from gkd_cli.cli import app
from gkd_client import APIError, Client
from tests.support.live_api import LiveServer, spec

Gkd = Callable[..., Result]


@pytest.fixture
def gkd(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Gkd:
    monkeypatch.setenv("GKD_URL", server.url)
    monkeypatch.setenv("GKD_API_KEY", server.api_key)
    monkeypatch.setenv("COLUMNS", "200")  # a narrow terminal on the test machine must not fold the tables
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args))

    return run


def _one_clean_line(result: Result) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output and "Traceback" not in (result.stderr or "")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_submit_yaml_twice_gives_one_job_then_list_and_status(gkd: Gkd, tmp_path: Path) -> None:
    spec_file = tmp_path / "job.yaml"
    spec_file.write_text(yaml.safe_dump(spec("cli-yaml")))
    first = gkd("submit", str(spec_file), "--json")
    assert first.exit_code == 0, first.output
    job = json.loads(first.stdout)
    second = json.loads(gkd("submit", str(spec_file), "--json").stdout)
    assert second["id"] == job["id"]  # Idempotency-Key derived from the content

    listed = json.loads(gkd("list", "--status", "queued", "--page-size", "100", "--json").stdout)
    assert job["id"] in [j["id"] for j in listed["items"]]
    table = gkd("status", job["id"])
    assert table.exit_code == 0 and "cli-yaml" in table.stdout and "queued" in table.stdout
    assert "plan" in table.stdout and "stage1b" in table.stdout and "stage2" in table.stdout


def test_a_spec_that_failed_is_named_on_resubmit_and_runs_again_with_new(
    gkd: Gkd, tmp_path: Path, server: LiveServer
) -> None:
    spec_file = tmp_path / "retry.yaml"
    spec_file.write_text(yaml.safe_dump(spec("cli-retry")))
    first = json.loads(gkd("submit", str(spec_file), "--json").stdout)["id"]
    server.start(first)
    server.fail(first, "the source set was broken")
    again = gkd("submit", str(spec_file))
    assert again.exit_code == 0, again.output
    assert f"already submitted as job {first} (failed); nothing new was queued" in again.stdout
    assert f"gkd submit {spec_file} --new" in again.stdout
    fresh = gkd("submit", str(spec_file), "--new")
    assert fresh.exit_code == 0 and "submitted job" in fresh.stdout, fresh.output
    new_id = fresh.stdout.split("submitted job ", 1)[1].split()[0]
    assert new_id != first
    assert "cannot be combined" in _one_clean_line(gkd("submit", str(spec_file), "--new", "--idempotency-key", "k"))


def test_bad_inputs_print_one_line(gkd: Gkd, tmp_path: Path, server: LiveServer) -> None:
    assert "not found" in _one_clean_line(gkd("submit", str(tmp_path / "missing.yaml")))
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert "invalid YAML at line" in _one_clean_line(gkd("submit", str(broken)))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"name": }')
    assert "invalid JSON at line 1" in _one_clean_line(gkd("submit", str(bad_json)))
    invalid = tmp_path / "invalid.json"
    invalid.write_text(json.dumps(spec("x", stage1={"steps": -1})))
    assert "steps" in _one_clean_line(gkd("submit", str(invalid)))
    assert "404" in _one_clean_line(gkd("status", "00000000-0000-0000-0000-000000000000"))
    refused = gkd("list", "--url", "http://127.0.0.1:9")
    assert "cannot reach" in _one_clean_line(refused)


def _run_in_background(server: LiveServer, job_id: str, outcome: str) -> threading.Thread:
    def work() -> None:
        time.sleep(0.2)
        server.start(job_id)
        server.advance(job_id, "stage1", 0.5, steps=range(0, 8))
        time.sleep(0.2)
        server.advance(job_id, "stage2", 0.5, steps=range(0, 4))
        time.sleep(0.2)
        if outcome == "succeeded":
            server.succeed(job_id, {"student.safetensors": ("student", b"w" * 5000)})
        else:
            server.fail(job_id, "source dataset has no labels")

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_watch_exit_status_follows_the_job(gkd: Gkd, server: LiveServer) -> None:
    client = Client(server.url, server.api_key)
    ok = client.submit_job(spec("watch-ok"))
    thread = _run_in_background(server, ok.id, "succeeded")
    result = gkd("watch", ok.id, "--poll", "0.05", "--timeout", "20")
    thread.join()
    assert result.exit_code == 0, result.output
    assert "stage1" in result.stdout and "stage2" in result.stdout and "loss" in result.stdout
    assert "synth-fog" in result.stdout  # the per-domain mIoU table at the end

    bad = client.submit_job(spec("watch-fail"))
    thread = _run_in_background(server, bad.id, "failed")
    result = gkd("watch", bad.id, "--poll", "0.05", "--timeout", "20")
    thread.join()
    assert result.exit_code == 1 and "no labels" in result.stderr

    cancelled = client.submit_job(spec("watch-cancel"))
    client.cancel_job(cancelled.id)
    assert gkd("watch", cancelled.id, "--poll", "0.05").exit_code == 3


def test_events_cancel_download_and_eval(gkd: Gkd, server: LiveServer, tmp_path: Path) -> None:
    client = Client(server.url, server.api_key)
    queued = client.submit_job(spec("cancel-me"))
    result = gkd("cancel", queued.id, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "cancelled"
    assert "409" in _one_clean_line(gkd("cancel", queued.id))
    events = json.loads(gkd("events", queued.id, "--json").stdout)
    assert events[0]["type"] == "created" and len(events) == 2

    job = client.submit_job(spec("download-me"))
    payload = b"student-weights" * 3000
    server.start(job.id)
    server.succeed(job.id, {"student.safetensors": ("student", payload)})
    listing = gkd("download", job.id)
    assert listing.exit_code == 0 and "student.safetensors" in listing.stdout
    out = tmp_path / "model.safetensors"
    result = gkd("download", job.id, "student.safetensors", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["sha256"] == hashlib.sha256(payload).hexdigest() and out.read_bytes() == payload
    assert "no artifact 'nope'" in _one_clean_line(gkd("download", job.id, "nope"))

    onnx = {"miou": 0.3055, "diff_points": -0.70, "within_tolerance": False}  # what the worker folds in
    server.finish_evaluations({"synth-snow": {"miou": 0.3125, "pixel_accuracy": 0.9, "images": 8, "onnx": onnx}})
    result = gkd("eval", job.id, "--target", "synth-fog:val", "--poll", "0.05", "--timeout", "60")
    assert result.exit_code == 0, result.output
    assert "synth-snow" in result.stdout and "31.2" in result.stdout
    assert "onnx (%)" in result.stdout and "30.6 (-0.70)" in result.stdout  # the shipped file, past tolerance

    queued_eval = client.evaluate(job.id, [{"dataset": "synth-fog", "split": "val"}])
    result = gkd("cancel-eval", queued_eval.id, "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["status"] == "cancelled", result.output
    assert "409" in _one_clean_line(gkd("cancel-eval", queued_eval.id))

    listed = gkd("evals", "--job", job.id)
    assert listed.exit_code == 0 and queued_eval.id in listed.stdout and "cancelled" in listed.stdout
    assert "synth-fog:val" in listed.stdout
    only_cancelled = json.loads(gkd("evals", "--status", "cancelled", "--json").stdout)["items"]
    assert queued_eval.id in [e["id"] for e in only_cancelled]
    assert all(e["status"] == "cancelled" for e in only_cancelled)
    scored = next(e for e in client.list_evaluations(job_id=job.id) if e.status == "succeeded")
    shown = gkd("show-eval", scored.id)
    assert shown.exit_code == 0 and "succeeded" in shown.stdout and "31.2" in shown.stdout
    assert "no evaluation" in _one_clean_line(gkd("show-eval", "0" * 36))


def test_keys_list_and_revoke_over_http(gkd: Gkd, server: LiveServer) -> None:
    from service.auth import create_api_key
    from service.db import session_scope
    from service.models import Team

    with session_scope(server.factory) as session:
        team = session.get(Team, server.team_id)
        assert team is not None
        key, row = create_api_key(session=session, team_name=team.name)
        prefix = row.prefix
    listed = json.loads(gkd("keys", "list", "--json").stdout)["items"]
    assert prefix in {k["prefix"] for k in listed}
    table = gkd("keys", "list")
    assert table.exit_code == 0 and prefix in table.stdout
    assert gkd("keys", "revoke", prefix).exit_code == 0
    with pytest.raises(APIError) as refused:
        Client(server.url, api_key=key).models()
    assert refused.value.status == 401
    revoked = json.loads(gkd("keys", "list", "--json").stdout)["items"]
    assert next(k for k in revoked if k["prefix"] == prefix)["revoked_at"] is not None
    assert "404" in _one_clean_line(gkd("keys", "revoke", "ffffffffffff"))


def test_watch_reads_each_loss_row_once_starting_from_the_latest(server: LiveServer) -> None:
    from rich.progress import Progress

    from gkd_cli.cli_jobs import WATCH_TAIL_ROWS, _Watcher

    client = Client(server.url, server.api_key)
    job = client.submit_job(spec("watched-late"))
    server.start(job.id)
    server.advance(job.id, "stage1", 0.4, steps=range(0, 2000))  # a long job already under way: 4,000 rows
    fetched: list[int] = []
    original = client.metric_page

    def counting(*args: Any, **kwargs: Any) -> Any:
        page = original(*args, **kwargs)
        fetched.append(len(page.rows))
        return page

    client.metric_page = counting  # type: ignore[method-assign]
    watcher = _Watcher(Progress())
    watcher.poll_metrics(client, job.id)
    assert fetched == [WATCH_TAIL_ROWS] and watcher.latest[("stage1", "loss")].step == 1999
    watcher.poll_metrics(client, job.id)
    assert fetched[-1] == 0  # nothing new: nothing read again
    server.advance(job.id, "stage2", 0.8, steps=range(0, 3))  # the next stage counts from 0 again
    watcher.poll_metrics(client, job.id)
    assert fetched[-1] == 3 and watcher.latest[("stage2", "loss")].step == 2


def test_logs_print_the_latest_attempts_output_or_the_one_asked(gkd: Gkd, server: LiveServer) -> None:
    from service.training_logs import log_key

    client = Client(server.url, server.api_key)
    job = client.submit_job(spec("with-logs"))
    assert "has no training log yet" in _one_clean_line(gkd("logs", job.id))
    server.store.put_bytes(log_key(job.id, 1), b"attempt one\nRankLost: worker died\n")
    server.store.put_bytes(log_key(job.id, 2), b"step 1\nstep 2\nTraceback (most recent call last):\nValueError: x\n")
    latest = gkd("logs", job.id)
    assert latest.exit_code == 0 and latest.stdout.endswith("ValueError: x\n") and "step 1" in latest.stdout
    assert gkd("logs", job.id, "--tail", "1").stdout == "ValueError: x\n"
    assert gkd("logs", job.id, "--attempt", "1").stdout == "attempt one\nRankLost: worker died\n"
    listed = gkd("logs", job.id, "--list")
    assert "attempt 1: 34 bytes" in listed.stdout and "attempt 2: 63 bytes" in listed.stdout
    assert client.logs(job.id)[-1][0] == 2 and client.log(job.id, tail_lines=1) == "ValueError: x\n"


def test_evals_refuses_a_status_filter_on_one_jobs_list(gkd: Gkd) -> None:
    assert "leave out --job" in _one_clean_line(gkd("evals", "--job", "0" * 36, "--status", "queued"))

"""``gkd demo``: the main job end to end on the embedded default, through the real REST API.

It starts ``gkd serve`` (SQLite, SQLite broker, local artifacts) in a data folder, generates the
synthetic domain-shift benchmark if it is missing, registers its domains as datasets, pretrains a
robust "foundation" teacher on the randomized style pool (a fine-tuned ``none`` job), distils it
into a small student with GKD on the source style alone, and prints per-domain mIoU for the
student next to the reference rows (teacher + head, student without distillation). Jobs carry
idempotency keys derived from their specs, so running the demo again reuses finished jobs.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from gkd_client import Client, DomainScore, Job

_console = Console()


@dataclass(frozen=True)
class DemoSize:
    """Benchmark and training budget; ``full`` is what the README's command runs."""

    image_size: int
    images: dict[str, int]
    teacher_steps: int
    stage1_steps: int
    proxy_steps: int
    stage2_steps: int
    teacher: dict[str, Any]
    student: dict[str, Any]


FULL = DemoSize(
    image_size=64,
    images={"source_train": 300, "source_val": 60, "target_val": 60, "pool_train": 600, "pool_val": 40},
    teacher_steps=600,
    stage1_steps=300,
    proxy_steps=300,
    stage2_steps=150,
    teacher={
        "model": "vit_small_patch16_224",
        "overrides": {"patch_size": 8, "depth": 4, "embed_dim": 128, "num_heads": 4},
    },
    student={
        "model": "vit_tiny_patch16_224",
        "overrides": {"patch_size": 8, "depth": 4, "embed_dim": 64, "num_heads": 2},
    },
)
QUICK = DemoSize(
    image_size=32,
    images={"source_train": 8, "source_val": 4, "target_val": 4, "pool_train": 8, "pool_val": 4},
    teacher_steps=4,
    stage1_steps=4,
    proxy_steps=2,
    stage2_steps=4,
    teacher={"model": "vit_small_patch16_224", "overrides": {"depth": 2, "embed_dim": 48, "num_heads": 2}},
    student={"model": "vit_tiny_patch16_224", "overrides": {"depth": 2, "embed_dim": 32, "num_heads": 2}},
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = open(logs / "serve.log", "ab")  # noqa: SIM115 - the child writes to it for its lifetime
    command = [sys.executable, "-m", "gkd_cli.cli", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def _wait_ready(base_url: str, server: subprocess.Popen[bytes], key_file: Path, timeout_s: float = 120.0) -> str:
    """Wait until the server answers /readyz with the local key; return the key."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gkd serve exited with code {server.returncode}; see {key_file.parent}/logs/serve.log")
        if key_file.is_file():
            key = key_file.read_text().strip()
            try:
                response = httpx.get(f"{base_url}/readyz", headers={"Authorization": f"Bearer {key}"}, timeout=5)
                if response.status_code == 200:
                    return key
            except httpx.TransportError:  # not listening yet
                pass
        time.sleep(0.5)
    raise RuntimeError(f"the embedded server did not become ready in {timeout_s:.0f} s")


def _benchmark(root: Path, size: DemoSize) -> dict[str, Any]:
    from gkd_core.data import BenchmarkSizes, generate_benchmark, load_benchmark

    if not (root / "benchmark.json").is_file():
        _console.print(f"generating the synthetic domain-shift benchmark in {root} ...")
        sizes = BenchmarkSizes(target_train=0, **size.images)
        generate_benchmark(root, seed=0, size=size.image_size, sizes=sizes)
    return load_benchmark(root)


def _submit(client: Client, spec: dict[str, Any]) -> Job:
    """Submit with a key derived from the spec; a replayed failed job is submitted again."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]
    job = client.submit_job(spec, idempotency_key=f"demo-{digest}")
    if job.status in ("failed", "cancelled"):
        job = client.submit_job(spec, idempotency_key=f"demo-{digest}-{int(time.time())}")
    return job


def _watch(client: Client, job: Job, title: str) -> Job:
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[phase]}"),
        TimeRemainingColumn(),
        console=_console,
    ) as progress:
        task = progress.add_task(title, total=1.0, phase="queued")

        def update(current: Job) -> None:
            progress.update(task, completed=current.progress, phase=current.phase or current.status)

        done = client.wait_for(job, poll_s=1.0, on_update=update)
    if done.status != "succeeded":
        raise RuntimeError(f"{title} ended {done.status}: {done.error_detail or 'see gkd events ' + done.id}")
    return done


def _miou(score: DomainScore | None) -> str:
    return "-" if score is None or score.miou is None else f"{100 * score.miou:.1f}"


def _table(job: Job, source: str, targets: list[str]) -> Table:
    columns = [f"{source} (src val)", *targets, "tgt avg"]
    table = Table(title="mIoU % per domain (synthetic domain-shift benchmark)")
    table.add_column("model", no_wrap=True)
    for column in columns:
        table.add_column(column, justify="right")
    rows = {"GKD student": job.summary.student, **{f"ref: {k}": v for k, v in job.summary.references.items()}}
    for name, scores in rows.items():
        per_target = [scores.get(f"synth-{t}/val") for t in targets]
        values = [s.miou for s in per_target if s is not None and s.miou is not None]
        avg = f"{100 * sum(values) / len(values):.1f}" if values else "-"
        in_domain = scores.get(f"synth-{source}/val") or scores.get(f"synth-{source}/train")
        table.add_row(name, _miou(in_domain), *(_miou(s) for s in per_target), avg)
    return table


def _lead_line(job: Job) -> str:
    """What the robustness report says of the teacher's lead over no-KD that the student carries."""
    report = job.summary.raw.get("report")
    lead = report.get("teacher_lead_carried") if isinstance(report, dict) else None
    carried = lead.get("target_average") if isinstance(lead, dict) else None
    if not isinstance(carried, int | float):
        return (
            "teacher's lead carried: none to measure (the report gives no fraction: the teacher leads the no-KD "
            "student by under half a point, or a reference row is missing)"
        )
    return (
        f"teacher's lead carried: the GKD student closes {100 * carried:.0f}% of the gap between the no-KD student "
        f"(ref: student_frozen) and the teacher on the target average (report.json among the job's files)"
    )


def _specs(bench: dict[str, Any], size: DemoSize, teacher_job: str | None) -> dict[str, Any]:
    source, pool = bench["source"], bench["pool"]
    targets = [{"dataset": f"synth-{t}", "split": "val"} for t in bench["targets"]]
    if teacher_job is None:
        return {
            "name": "demo-teacher-on-style-pool",
            "teacher": {**size.teacher, "weights": "none"},
            "student": {**size.teacher, "weights": "none"},
            "source": {"dataset": f"synth-{pool}", "split": "train"},
            "targets": [{"dataset": f"synth-{source}", "split": "val"}, *targets],
            "method": "none",
            "stage2": {
                "steps": size.teacher_steps,
                "batch_size": 16,
                "lr": 5e-4,
                "crop_size": size.image_size,
                "head": "fpn",
                "finetune": True,
                "checkpoint_every": 100,
            },
            "resources": {"precision": "fp32"},
        }
    # Step 1a (the paper's proxy step) distils on the style pool, the teacher's own varied images.
    proxy = {"proxy": {"dataset": f"synth-{pool}", "split": "train"}} if size.proxy_steps else {}
    return {
        "name": "demo-gkd-student",
        "teacher": {**size.teacher, "weights": f"artifact://{teacher_job}/student.safetensors"},
        "student": {**size.student, "weights": "none"},
        "source": {"dataset": f"synth-{source}", "split": "train"},
        **proxy,
        "targets": targets,
        "method": "gkd",
        "stage1": {
            "steps": size.stage1_steps,
            "batch_size": 16,
            "lr": 5e-4,
            "image_size": size.image_size,
            "checkpoint_every": 100,
            **({"proxy_step": {"steps": size.proxy_steps}} if size.proxy_steps else {}),
        },
        "stage2": {
            "steps": size.stage2_steps,
            "batch_size": 8,
            "lr": 5e-4,
            "crop_size": size.image_size,
            "head": "fpn",
            "checkpoint_every": 100,
        },
        "references": ["teacher", "student_frozen"],
        "resources": {"precision": "fp32"},
    }


def run_demo(data_dir: Path = Path(".gkd"), *, quick: bool = False, port: int | None = None) -> int:
    """Run the demo and return a process exit code."""
    size = QUICK if quick else FULL
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    started = time.monotonic()
    server = _start_server(data_dir, port)
    try:
        base_url = f"http://127.0.0.1:{port}"
        key = _wait_ready(base_url, server, data_dir / "api-key")
        with Client(base_url, api_key=key, timeout=60.0) as client:
            _console.print(f"embedded service on http://127.0.0.1:{port} (dashboard: /dashboard), data in {data_dir}")
            bench_root = data_dir / ("benchmark-quick" if quick else "benchmark")
            bench = _benchmark(bench_root, size)
            for domain in bench["domains"]:
                client.register_dataset(f"synth-{domain}", layout="folder", uri=(bench_root / domain).as_uri())
            for domain in bench["domains"]:  # a loaded machine may answer before validating: jobs need them valid
                client.wait_for_dataset(f"synth-{domain}", timeout=600, poll_s=0.5)
            teacher = _watch(client, _submit(client, _specs(bench, size, None)), "1/2 teacher on the style pool")
            student = _watch(client, _submit(client, _specs(bench, size, teacher.id)), "2/2 GKD distillation")
            _console.print(_table(student, bench["source"], list(bench["targets"])))
            _console.print(_lead_line(student))
            target = Path.cwd() / "gkd-student.safetensors"
            client.download(client.artifact(student.id, "student.safetensors"), target)
            _console.print(f"distilled student: {target}  (ONNX and model card: gkd download {student.id} ...)")
            _console.print(f"demo finished in {time.monotonic() - started:.0f} s")
    except Exception as exc:  # the CLI prints one line, not a traceback
        _console.print(f"[red]demo failed:[/red] {exc}")
        return 1
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)  # it stops its worker first (warm shutdown, up to 20 s)
        except subprocess.TimeoutExpired:
            server.kill()
    return 0

"""Submit the paper comparison to a running GKD Distill service: one job per arm and seed.

``python -m bench.reproduce --out DIR --quick --via-api http://127.0.0.1:8000 --api-key KEY``

What it does:

1. Registers every benchmark domain as a dataset (``POST /v1/datasets`` with ``file://`` URIs;
   the server's allowed roots (``GKD_ALLOWED_ROOTS``) must contain ``OUT``).
2. Submits the teacher job: ``method: none`` with ``stage2.finetune: true`` on the pool, with the
   teacher architecture as its student. Its exported ``student.safetensors`` is the next jobs'
   teacher: ``artifact://<teacher job id>/student.safetensors``.
3. The student initialisation of each seed is the same file as in the direct run (``file://``).
4. One job per arm and seed with the same stage-1/stage-2 budget; the frozen no-KD job carries the
   ``teacher`` reference. Jobs are polled to the end; the same table is printed and written to
   ``OUT/RESULTS_api.md`` and ``OUT/results_api.json``, with the largest difference to the direct
   run's numbers when ``OUT/results.json`` exists.

One stage-1 budget per call (the first of ``--stage1-budgets``, or the preset's), with the same
compute-matched steps per arm as the direct run (bench/reproduce_budget.py). The JobSpec has one
``stage1.steps`` for 1a and 1b, which is enough: every arm runs the same count in each step it has.
What it cannot express is the head width (the service uses its default of 128 channels; the presets
use 128 too), and ``--device``: the service's worker picks its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import gkd_catalog
from bench.reproduce_budget import arm_budget
from bench.reproduce_config import Arm, SizePreset
from bench.reproduce_report import markdown_table, summarize

_logger = logging.getLogger(__name__)

DATASET_PREFIX = "repro-"


def arm_spec(
    arm: Arm,
    *,
    preset: SizePreset,
    stage1_budget: int,
    seed: int,
    teacher_weights: str,
    student_weights: str,
    source: str,
    targets: list[str],
    pool: str,
    with_teacher_ref: bool,
) -> dict[str, Any]:
    """The JobSpec body of one arm at its compute-matched steps (datasets by their registered names)."""
    from bench.reproduce_config import STUDENT_MODEL, TEACHER_MODEL

    budget = arm_budget(arm, preset, stage1_budget)
    # 1a and 1b share stage1.steps; an arm runs the same count in every stage-1 step it has.
    stage1_steps = max(budget.proxy_steps, budget.stage1_steps, 1)

    spec: dict[str, Any] = {
        "name": f"repro-{arm.run_key}-seed{seed}".replace("_", "-"),
        "teacher": {"model": TEACHER_MODEL, "weights": teacher_weights, "overrides": dict(preset.teacher_arch)},
        "student": {"model": STUDENT_MODEL, "weights": student_weights, "overrides": dict(preset.student_arch)},
        "source": {"dataset": DATASET_PREFIX + source, "split": "train"},
        "targets": [{"dataset": DATASET_PREFIX + d, "split": "val"} for d in [*targets, source]],
        "method": arm.method,
        "stage1": {
            "steps": stage1_steps,
            "batch_size": preset.stage1_batch,
            "lr": preset.stage1_lr,
            "image_size": preset.image_size,
            "loss_weights": {"cls": 1.0, "feature": 1.0, "mask": arm.mask_weight},
            "checkpoint_every": stage1_steps,
        },
        "stage2": {
            "steps": budget.stage2_steps,
            "batch_size": preset.stage2_batch,
            "lr": preset.stage2_lr,
            "crop_size": preset.image_size,
            "head": preset.head,
            "checkpoint_every": budget.stage2_steps,
            "finetune": arm.finetune,
        },
        "references": ["teacher"] if with_teacher_ref else [],
        "seed": seed,
        "resources": {"queue": os.environ.get("GKD_QUEUE", "gpu"), "gpus": 1, "precision": "fp32"},
    }
    if arm.proxy:
        spec["proxy"] = {"dataset": DATASET_PREFIX + pool, "split": "train"}
    if "stage1" not in gkd_catalog.method(arm.method).stages:
        del spec["stage1"]  # a single-stage arm: the API refuses a stage1 block it would ignore
    return spec


def submit_teacher(
    client: Any, preset: SizePreset, source: str, targets: list[str], pool: str, tag: str
) -> tuple[str, dict[str, Any]]:
    """Pretrain the teacher as a job (method none, fine-tuned, on the pool); return its artifact URI."""
    from bench.reproduce_config import TEACHER_MODEL

    arch = {"model": TEACHER_MODEL, "weights": "none", "overrides": dict(preset.teacher_arch)}
    spec: dict[str, Any] = {
        "name": "repro-foundation-teacher",
        "teacher": arch,
        "student": arch,
        "source": {"dataset": DATASET_PREFIX + pool, "split": "train"},
        "targets": [{"dataset": DATASET_PREFIX + d, "split": "val"} for d in [pool, *targets, source]],
        "method": "none",
        "stage2": {
            "steps": preset.teacher_steps,
            "batch_size": preset.teacher_batch,
            "lr": preset.teacher_lr,
            "crop_size": preset.image_size,
            "head": preset.head,
            "checkpoint_every": preset.teacher_steps,
            "finetune": True,
        },
        "seed": 0,
        "resources": {"queue": os.environ.get("GKD_QUEUE", "gpu"), "gpus": 1, "precision": "fp32"},
    }
    job = client.submit_job(spec, idempotency_key=f"repro-teacher-{preset.name}-{tag}")
    _logger.info("submitted the teacher job %s; waiting for it", job.id)
    done = client.wait_for(job.id, poll_s=5.0)
    if done.status != "succeeded":
        raise SystemExit(f"teacher job {job.id} {done.status}: {done.error_reason} {done.error_detail}")
    summary = _domain_results(done.raw.get("summary") or {}, "student")
    return f"artifact://{job.id}/student.safetensors", {"id": job.id, "miou": summary}


def _domain_results(summary: dict[str, Any], key: str) -> dict[str, float]:
    """mIoU per domain name from a job summary (labels are ``repro-<domain>/<split>``)."""
    block = summary.get(key) or {}
    out: dict[str, float] = {}
    for label, metrics in block.items():
        name, _, split = label.partition("/")
        if split != "val":
            continue  # the service also evaluates the source train split; the table uses val splits
        value = metrics.get("miou") if isinstance(metrics, dict) else metrics
        if value is not None:
            out[name.removeprefix(DATASET_PREFIX)] = float(value)
    return out


def run_via_api(
    args: argparse.Namespace, preset: SizePreset, arms: list[Arm], n_seeds: int, out: Path, stage1_budget: int
) -> dict[str, Any]:
    """Register datasets, submit and poll one job per arm and seed, write results_api.json and the table."""
    from bench.reproduce_run import prepare_benchmark, student_init
    from gkd_client import Client

    bench = prepare_benchmark((args.benchmark or out / "benchmark").resolve(), preset, source=args.source)
    client = Client(args.via_api, args.api_key or os.environ.get("GKD_API_KEY"), timeout=60.0)
    for domain in [bench.source, *bench.targets, bench.pool]:
        client.register_dataset(DATASET_PREFIX + domain, layout="folder", uri=(bench.root / domain).as_uri())
        ds = client.wait_for_dataset(DATASET_PREFIX + domain, timeout=3600, poll_s=1.0)  # big sets validate later
        _logger.info("dataset %s: %s", ds.name, ds.status)
    teacher_uri, teacher_job = submit_teacher(client, preset, bench.source, bench.targets, bench.pool, out.name)
    jobs: dict[tuple[str, int], str] = {}
    runs: dict[str, Arm] = {}
    for arm in arms:
        runs.setdefault(arm.run_key, arm if arm.result == "student" else Arm(arm.run_key, arm.run_key, arm.method))
    wants_teacher = any(a.result == "teacher" for a in arms)
    for seed in range(n_seeds):
        init_uri = student_init(out, preset, seed).resolve().as_uri()
        for key, arm in runs.items():
            spec = arm_spec(
                arm,
                preset=preset,
                stage1_budget=stage1_budget,
                seed=seed,
                teacher_weights=teacher_uri,
                student_weights=init_uri,
                source=bench.source,
                targets=bench.targets,
                pool=bench.pool,
                with_teacher_ref=wants_teacher and key == "none_frozen",
            )
            key_tag = f"{spec['name']}-{preset.name}-b{stage1_budget}-{out.name}"
            job = client.submit_job(spec, idempotency_key=key_tag)
            jobs[(key, seed)] = job.id
            _logger.info("submitted %s as job %s", spec["name"], job.id)
    per_arm: dict[str, dict[str, Any]] = {a.name: {"seeds": {}, "seconds": {}} for a in arms}
    failures: dict[str, str] = {}
    for (key, seed), job_id in jobs.items():
        job = client.wait_for(job_id, poll_s=5.0)
        if job.status != "succeeded":
            failures[f"{key}/seed{seed}"] = f"{job.status}: {job.error_reason} {job.error_detail}"
            continue
        raw = job.raw.get("summary") or {}
        seconds = None
        if job.started_at and job.finished_at:
            seconds = (job.finished_at - job.started_at).total_seconds()
        for a in arms:
            if a.run_key != key:
                continue
            block = raw.get("student") if a.result == "student" else (raw.get("references") or {}).get(a.result)
            per_arm[a.name]["seeds"][str(seed)] = _domain_results({"x": block or {}}, "x")
            per_arm[a.name]["seconds"][str(seed)] = seconds
    complete = {
        k: v
        for k, v in per_arm.items()
        if v["seeds"] and all(set(s) >= {*bench.targets, bench.source} for s in v["seeds"].values())
    }
    summary = summarize(complete, bench.targets, bench.source)
    table = markdown_table(summary, bench.targets, bench.source)
    results = {
        "via_api": args.via_api,
        "stage1_budget": stage1_budget,
        "jobs": {f"{k}/seed{s}": j for (k, s), j in jobs.items()},
        "arms": per_arm,
        "summary": summary,
        "failures": failures,
        "teacher_job": teacher_job,
        "teacher_weights": teacher_uri,
    }
    direct = out / "results.json"
    if direct.is_file():
        direct_budget = json.loads(direct.read_text()).get("budgets", {}).get(str(stage1_budget), {})
        results["direct_vs_api"] = compare_with_direct(direct_budget.get("arms", {}), per_arm)
        _logger.info("largest |direct - api| mIoU per arm: %s", results["direct_vs_api"])
    (out / "results_api.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    (out / "RESULTS_api.md").write_text(table + "\n")
    print(table)
    if failures:
        _logger.error("failed jobs: %s", failures)
    return results


def compare_with_direct(direct: dict[str, Any], api: dict[str, Any]) -> dict[str, float | None]:
    """Per arm, the largest absolute mIoU difference between the direct run and the service jobs."""
    out: dict[str, float | None] = {}
    for arm, data in api.items():
        diffs = [
            abs(v - direct[arm]["seeds"][seed][domain])
            for seed, per in data["seeds"].items()
            for domain, v in per.items()
            if arm in direct and seed in direct[arm]["seeds"] and domain in direct[arm]["seeds"][seed]
        ]
        out[arm] = max(diffs) if diffs else None
    return out

"""Submit the paper comparison to a running GKD Distill service: one job per arm and seed.

``python -m bench.reproduce --out DIR --quick --via-api http://127.0.0.1:8000 --api-key KEY``

What it does, and where the service cannot yet express the direct run (reported, not hacked):

1. Registers every benchmark domain as a dataset (``POST /v1/datasets`` with ``file://`` URIs;
   the server's allowed roots must contain the benchmark directory).
2. The teacher: the JobSpec has no ``finetune`` switch, so a ``method: none`` job trains only a head
   on a *frozen* encoder and cannot pretrain the foundation teacher. The teacher is therefore
   pretrained directly (bench/reproduce_run.pretrain_teacher, the same code as the direct run) and
   passed to every job as ``file://`` weights. ``--teacher-job`` additionally submits the
   ``method: none`` pool job the issue describes and uses ``artifact://<id>/student.safetensors``
   as teacher weights; that only makes sense once the JobSpec can fine-tune.
3. The student initialisation of each seed is the same file as in the direct run (``file://``).
4. One job per arm and seed with the same stage-1/stage-2 budget; the frozen no-KD job carries the
   ``teacher`` reference. Jobs are polled to the end and the same table is printed and written.

Differences to the direct run that the JobSpec cannot express: the fine-tuned no-KD arm
(``finetune``) and stage-1 ``proxy_steps`` (the service runs 1a for ``stage1.steps`` too).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from bench.reproduce_config import Arm, SizePreset
from bench.reproduce_report import markdown_table, summarize

_logger = logging.getLogger(__name__)

DATASET_PREFIX = "repro-"


def arm_spec(
    arm: Arm,
    *,
    preset: SizePreset,
    seed: int,
    teacher_weights: str,
    student_weights: str,
    source: str,
    targets: list[str],
    pool: str,
    with_teacher_ref: bool,
) -> dict[str, Any]:
    """The JobSpec body of one arm (datasets by their registered names)."""
    from bench.reproduce_config import STUDENT_MODEL, TEACHER_MODEL

    spec: dict[str, Any] = {
        "name": f"repro-{arm.run_key}-seed{seed}".replace("_", "-"),
        "teacher": {"model": TEACHER_MODEL, "weights": teacher_weights, "overrides": dict(preset.teacher_arch)},
        "student": {"model": STUDENT_MODEL, "weights": student_weights, "overrides": dict(preset.student_arch)},
        "source": {"dataset": DATASET_PREFIX + source, "split": "train"},
        "targets": [{"dataset": DATASET_PREFIX + d, "split": "val"} for d in [*targets, source]],
        "method": arm.method,
        "stage1": {
            "steps": preset.stage1_steps,
            "batch_size": preset.stage1_batch,
            "lr": preset.stage1_lr,
            "image_size": preset.image_size,
            "loss_weights": {"cls": 1.0, "feature": 1.0, "mask": arm.mask_weight},
            "checkpoint_every": max(preset.stage1_steps, preset.proxy_steps),
        },
        "stage2": {
            "steps": preset.stage2_steps,
            "batch_size": preset.stage2_batch,
            "lr": preset.stage2_lr,
            "crop_size": preset.image_size,
            "head": preset.head,
            "checkpoint_every": preset.stage2_steps,
        },
        "references": ["teacher"] if with_teacher_ref else [],
        "seed": seed,
        "resources": {"queue": os.environ.get("GKD_QUEUE", "gpu"), "gpus": 1, "precision": "fp32"},
    }
    if arm.proxy:
        spec["proxy"] = {"dataset": DATASET_PREFIX + pool, "split": "train"}
    return spec


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
    args: argparse.Namespace, preset: SizePreset, arms: list[Arm], n_seeds: int, out: Path
) -> dict[str, Any]:
    """Register datasets, submit and poll one job per arm and seed, write results_api.json and the table."""
    from bench.reproduce_run import prepare_benchmark, pretrain_teacher, student_init
    from client.sdk import Client

    bench = prepare_benchmark((args.benchmark or out / "benchmark").resolve(), preset)
    client = Client(args.via_api, args.api_key or os.environ.get("GKD_API_KEY"), timeout=60.0)
    for domain in [bench.source, *bench.targets, bench.pool]:
        ds = client.register_dataset(DATASET_PREFIX + domain, layout="folder", uri=(bench.root / domain).as_uri())
        _logger.info("dataset %s: %s", ds.get("name"), ds.get("status"))
    if getattr(args, "teacher_job", False):
        raise SystemExit(
            "--teacher-job: the JobSpec cannot fine-tune with method none (no finetune field), "
            "so a service job cannot pretrain the teacher; see bench/reproduce_service.py"
        )
    teacher_file, _pre, _ = pretrain_teacher(out, bench, preset)
    teacher_uri = teacher_file.resolve().as_uri()
    jobs: dict[tuple[str, int], str] = {}
    skipped = [a.name for a in arms if a.finetune]
    runs: dict[str, Arm] = {}
    for arm in arms:
        if not arm.finetune:
            runs.setdefault(arm.run_key, arm if arm.result == "student" else Arm(arm.run_key, arm.run_key, arm.method))
    wants_teacher = any(a.result == "teacher" for a in arms)
    for seed in range(n_seeds):
        init_uri = student_init(out, preset, seed).resolve().as_uri()
        for key, arm in runs.items():
            spec = arm_spec(
                arm,
                preset=preset,
                seed=seed,
                teacher_weights=teacher_uri,
                student_weights=init_uri,
                source=bench.source,
                targets=bench.targets,
                pool=bench.pool,
                with_teacher_ref=wants_teacher and key == "none_frozen",
            )
            job = client.submit_job(spec, idempotency_key=f"{spec['name']}-{preset.name}-{out.name}")
            jobs[(key, seed)] = job.id
            _logger.info("submitted %s as job %s", spec["name"], job.id)
    per_arm: dict[str, dict[str, Any]] = {a.name: {"seeds": {}, "seconds": {}} for a in arms if not a.finetune}
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
            if a.run_key != key or a.finetune:
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
        "jobs": {f"{k}/seed{s}": j for (k, s), j in jobs.items()},
        "arms": per_arm,
        "summary": summary,
        "failures": failures,
        "not_expressible": skipped,
        "teacher_weights": teacher_uri,
    }
    (out / "results_api.json").write_text(json.dumps(results, indent=2, sort_keys=True, default=str))
    (out / "RESULTS_api.md").write_text(table + "\n")
    print(table)
    if failures:
        _logger.error("failed jobs: %s", failures)
    if skipped:
        _logger.warning("arms the JobSpec cannot express (no finetune field): %s", skipped)
    return results

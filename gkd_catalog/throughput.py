"""Achieved training throughput per GPU kind (throughput.json), written by bench/gpu_check.py on a real GPU.

A job's GPU-hours are its FLOPs divided by the FLOP/s a GPU kind sustains on that kind of step. The rate is
measured, never assumed: bench/gpu_check.py times a GKD stage-1 step (steps 1a and 1b) and one stage-2 step per
head, counts their FLOPs with the same FlopCounterMode the cost table (costs.json) uses, and
:func:`record_gpu_check` files ``flops / seconds`` under the GPU's name. A kind or a phase that has not been
measured has no rate: estimates say so (:class:`~gkd_catalog.costs.CostUnknown`) instead of guessing.

Applying a rate measured on one model pair (DINOv2 ViT-B/14 -> DeiT-S/16 at 512 px) to another assumes the
same share of time in matmuls; smaller models and smaller batches usually reach a lower rate, so the
GPU-hours of such jobs are optimistic.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from gkd_catalog.costs import CostUnknown

THROUGHPUT_PATH = Path(__file__).with_name("throughput.json")

# gpu_check section -> the phase key its rate prices (a plan stage, or "stage2/<head>").
_STAGE1_SECTIONS = {"stage1_1a": "stage1a", "stage1_1b": "stage1b"}


def phase_key(stage: str, head: str) -> str:
    """The throughput row that prices a plan stage: stage1a, stage1b, or stage2/<head> (stage 2 and references)."""
    return stage if stage in _STAGE1_SECTIONS.values() else f"stage2/{head}"


@cache
def load_throughput(path: Path = THROUGHPUT_PATH) -> dict[str, Any]:
    """The committed table: ``{"kinds": {gpu name: {"phases": {key: {"flops_per_s", ...}}, ...}}}``."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def known_kinds(table: dict[str, Any] | None = None) -> list[str]:
    """GPU kinds with at least one measured phase, in table order."""
    table = table if table is not None else load_throughput()
    return [kind for kind, row in table.get("kinds", {}).items() if row.get("phases")]


def rate(kind: str, key: str, table: dict[str, Any] | None = None) -> float:
    """Measured FLOP/s of GPU ``kind`` on phase ``key``.

    Raises:
        CostUnknown: the kind, or this phase on it, was never measured (the message names what was).
    """
    table = table if table is not None else load_throughput()
    row = table.get("kinds", {}).get(kind)
    if row is None:
        measured = ", ".join(known_kinds(table)) or "none yet"
        raise CostUnknown(
            f"GPU kind {kind!r} has no throughput measurement (measured: {measured}); "
            "run bench/gpu_check.py on one to add it"
        )
    phase = row.get("phases", {}).get(key)
    if not phase or not phase.get("flops_per_s"):
        raise CostUnknown(f"{kind} has no measured rate for {key} (bench/gpu_check.py section failed or skipped)")
    return float(phase["flops_per_s"])


def _phase(section: dict[str, Any], config: str) -> dict[str, Any] | None:
    """A measured section as a throughput row (None when it did not finish)."""
    if section.get("status", "ok") != "ok" or not section.get("ms_per_step") or not section.get("flops_per_step"):
        return None
    seconds = float(section["ms_per_step"]) / 1e3
    return {
        "flops_per_s": float(section["flops_per_step"]) / seconds,
        "images_per_s": float(section.get("images_per_s") or 0.0),
        "batch": section.get("batch"),
        "config": config,
    }


def rows_from_gpu_check(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The phases a gpu_check.json report measured, keyed as :func:`phase_key` looks them up."""
    sections = report.get("sections", {})
    phases: dict[str, dict[str, Any]] = {}
    for name, key in _STAGE1_SECTIONS.items():
        sec = sections.get(name) or {}
        row = _phase(sec, f"{sec.get('teacher')} -> {sec.get('student')} at {sec.get('image_size')} px")
        if row is not None:
            phases[key] = row
    heads = sections.get("stage2_heads") or {}
    for head, sub in (heads.get("per_head") or {}).items():
        row = _phase(sub, f"{head} on frozen {heads.get('student')} at {heads.get('image_size')} px")
        if row is not None:
            phases[f"stage2/{head}"] = row
    return phases


def record_gpu_check(report: dict[str, Any], path: Path = THROUGHPUT_PATH) -> str | None:
    """File a full-size gpu_check report's rates under its GPU's name in ``path``; returns the kind (None: nothing).

    Smoke runs (toy sizes) and CPU runs are not recorded: their rates would price real jobs wrongly.
    """
    meta = report.get("meta", {})
    if meta.get("smoke") or not str(meta.get("device", "")).startswith("cuda"):
        return None
    phases = rows_from_gpu_check(report)
    if not phases:
        return None
    kind = str(meta.get("device_name") or "unknown GPU")
    table = json.loads(path.read_text()) if path.exists() else {"kinds": {}}
    table.setdefault("kinds", {})[kind] = {
        "measured_at": meta.get("finished") or meta.get("started"),
        "torch": meta.get("torch"),
        "cuda": meta.get("cuda"),
        "precision": report.get("plan", {}).get("precision"),
        "phases": phases,
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n")
    os.replace(tmp, path)
    load_throughput.cache_clear()
    return kind

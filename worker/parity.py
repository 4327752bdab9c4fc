"""ONNX/INT8 parity in a job's summary: each deployable file's mIoU per domain beside the PyTorch student's.

The rank writes the figures (``summary.deployed``); this module folds them into each student domain row
(``student[domain].onnx`` / ``.int8``, which the SDK, ``gkd compare`` and the dashboard read) and names the
domains where a shipped file drifts from PyTorch by more than the tolerance, which become job events.
"""

from __future__ import annotations

from typing import Any

TOLERANCE_POINTS = 0.1
"""A deployed file whose mIoU differs from PyTorch's by more than this (mIoU points) gets an event."""


def parity(torch_miou: float, deployed_miou: float) -> dict[str, Any]:
    """The deployed mIoU, the difference in points (deployed minus PyTorch), and whether it is within tolerance."""
    diff = round((deployed_miou - torch_miou) * 100.0, 4)
    return {"miou": deployed_miou, "diff_points": diff, "within_tolerance": abs(diff) <= TOLERANCE_POINTS}


def fold_parity(student: dict[str, dict[str, Any]], deployed: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Add ``student[domain][kind] = parity(...)`` for every deployed kind scored on that domain (in place)."""
    for kind, rows in deployed.items():
        for domain, metrics in rows.items():
            row = student.get(domain)
            if row is not None and row.get("miou") is not None and metrics.get("miou") is not None:
                row[kind] = parity(float(row["miou"]), float(metrics["miou"]))


def parity_warnings(summary: dict[str, Any]) -> list[str]:
    """One message per (deployed file, domain) outside the tolerance, for the job's events."""
    messages = []
    for domain, row in (summary.get("student") or {}).items():
        for kind in summary.get("deployed") or {}:
            check = row.get(kind) if isinstance(row, dict) else None
            if isinstance(check, dict) and not check.get("within_tolerance", True):
                messages.append(
                    f"{kind} parity on {domain}: mIoU {check['miou'] * 100:.2f} vs PyTorch {row['miou'] * 100:.2f} "
                    f"({check['diff_points']:+.2f} points, tolerance {TOLERANCE_POINTS})"
                )
    return messages

"""Parity of the shipped files in a job summary, and which differences become events."""

from __future__ import annotations

from typing import Any

from worker.parity import TOLERANCE_POINTS, fold_parity, parity, parity_warnings


def test_parity_reports_the_difference_in_points_and_the_tolerance() -> None:
    assert parity(0.41, 0.4085) == {"miou": 0.4085, "diff_points": -0.15, "within_tolerance": False}
    assert parity(0.41, 0.4095)["within_tolerance"] is True
    assert TOLERANCE_POINTS == 0.1  # the "above 0.1 mIoU point"


def test_fold_parity_then_warnings_name_each_drifting_file_and_domain() -> None:
    student: dict[str, dict[str, Any]] = {"night": {"miou": 0.5}, "fog": {"miou": 0.25}, "rain": {"miou": None}}
    deployed = {"onnx": {"night": {"miou": 0.5}, "fog": {"miou": 0.25}}, "int8": {"night": {"miou": 0.48}}}
    fold_parity(student, deployed)
    assert student["night"]["onnx"]["diff_points"] == 0.0 and student["night"]["int8"]["diff_points"] == -2.0
    assert "int8" not in student["fog"] and "onnx" not in student["rain"]
    summary = {"student": student, "deployed": deployed}
    assert parity_warnings(summary) == [
        "int8 parity on night: mIoU 48.00 vs PyTorch 50.00 (-2.00 points, tolerance 0.1)"
    ]
    assert parity_warnings({"student": student}) == []  # no deployed files, nothing to warn about

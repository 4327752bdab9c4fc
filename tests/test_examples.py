"""The example job specs in examples/ stay valid JobSpecs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from service.schemas import JobSpec

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_a_valid_job_spec(path: Path) -> None:
    spec = JobSpec.model_validate(yaml.safe_load(path.read_text()))
    assert spec.targets


def test_there_are_examples() -> None:
    assert EXAMPLES, "examples/ should hold at least one job spec"

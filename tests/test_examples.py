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


PAPER = [p for p in EXAMPLES if p.name.startswith("paper-")]


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.name)
def test_paper_examples_use_the_papers_head_and_protocol_and_cite_their_source(path: Path) -> None:
    text = path.read_text()
    spec = JobSpec.model_validate(yaml.safe_load(text))
    assert spec.stage2.head == "mask2former" and spec.stage2.head_queries == 100 and spec.stage2.head_layers == 9
    assert spec.stage2.cat_max_ratio == 0.75 and spec.stage2.scale == (0.5, 2.0) and spec.stage2.steps == 40_000
    assert spec.stage1.epochs == 300 and spec.stage1.batch_size == 128
    assert all(t.resize is not None and t.group for t in spec.targets)
    assert "Younger-hua/GKD" in text or "the authors' code" in text


def test_all_three_paper_settings_are_there() -> None:
    assert {p.name for p in PAPER} == {"paper-f2l-gtav.yaml", "paper-f2f-gtav.yaml", "paper-c2acdc.yaml"}

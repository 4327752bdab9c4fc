"""The robustness report every job writes: rows, the teacher-lead fraction, CKA to the teacher, a chart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from gkd_core.config import BackboneConfig, Stage1Config
from gkd_core.engine.callbacks import RecordingCallbacks
from gkd_core.engine.similarity import linear_cka
from gkd_core.errors import ConfigError
from gkd_core.experiment import DatasetSplit, ExperimentConfig, Stage2Config, run_experiment
from gkd_core.robustness import build_report, lead_fraction, write_report
from tests.gkd_core.experiment.synth import write_domain

STUDENT = {"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 8}
TEACHER = {"depth": 2, "embed_dim": 48, "num_heads": 2, "patch_size": 8}


def test_linear_cka_is_one_for_rotated_scaled_copies_and_low_for_unrelated_features() -> None:
    torch.manual_seed(0)
    x = torch.randn(2000, 8)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8))
    assert linear_cka(x, 3.0 * x @ rotation) == pytest.approx(1.0, abs=1e-9)
    wider = torch.cat([x, torch.zeros(2000, 4)], dim=1) + 5.0  # a wider copy with an offset
    assert linear_cka(x, wider) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, torch.randn(2000, 16)) < 0.05
    half = torch.cat([x[:, :4], torch.randn(2000, 4)], dim=1)  # shares half the signal
    assert 0.2 < linear_cka(x, half) < 0.8
    assert linear_cka(x, torch.ones(2000, 3)) == 0.0
    with pytest.raises(ValueError, match="n x p and n x q"):
        linear_cka(x, torch.randn(10, 8))


def test_lead_fraction_and_report_rows() -> None:
    assert lead_fraction(0.30, 0.40, 0.20) == pytest.approx(0.5)
    assert lead_fraction(0.30, 0.203, 0.20) is None  # a 0.3-point lead is noise
    rows = {
        "student": {"fog": 0.30, "night": 0.25, "src": 0.6},
        "teacher": {"fog": 0.40, "night": 0.35, "src": 0.7},
        "student_frozen": {"fog": 0.20, "night": 0.15, "src": 0.5},
    }
    report = build_report(rows=rows, targets=["fog", "night"], source="src", similarity={"student": {"fog": 0.8}})
    lead = report["teacher_lead_carried"]
    assert lead["per_domain"] == {"fog": pytest.approx(0.5), "night": pytest.approx(0.5), "src": pytest.approx(0.5)}
    assert lead["target_average"] == pytest.approx(0.5)
    assert report["target_average"]["teacher"] == pytest.approx(0.375)
    assert report["domains"] == ["fog", "night", "src"] and report["cka_to_teacher"] == {"student": {"fog": 0.8}}
    without_teacher = build_report(rows={"student": rows["student"]}, targets=["fog"], source=None)
    assert without_teacher["teacher_lead_carried"] is None and without_teacher["domains"] == ["fog"]


def test_write_report_draws_a_png(tmp_path: Path) -> None:
    rows = {"student": {"fog": 0.3}, "teacher": {"fog": 0.4}}
    paths = write_report(
        tmp_path, build_report(rows=rows, targets=["fog"], source=None, similarity={"student": {"fog": 0.7}})
    )
    assert json.loads(paths["report"].read_text())["miou"]["teacher"] == {"fog": 0.4}
    with Image.open(paths["report_chart"]) as image:
        assert image.format == "PNG" and image.width >= 600 and image.height >= 300


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DatasetSplit]:
    root = tmp_path_factory.mktemp("report")
    return {
        "source": DatasetSplit(write_domain(root / "src", seed=0, style=0), "folder", "train", "source"),
        "night": DatasetSplit(write_domain(root / "night", seed=1, style=1, split="val"), "folder", "val", "night"),
        "fog": DatasetSplit(write_domain(root / "fog", seed=2, style=2, count=2, split="val"), "folder", "val", "fog"),
    }


def _config(domains: dict[str, DatasetSplit], **kw: object) -> ExperimentConfig:
    base: dict[str, object] = {
        "teacher": BackboneConfig("vit_small_patch16_224", img_size=32, overrides=TEACHER),
        "student": BackboneConfig("vit_tiny_patch16_224", img_size=32, overrides=STUDENT),
        "source": domains["source"],
        "targets": [domains["night"], domains["fog"]],
        "stage1": Stage1Config(steps=2, batch_size=2, image_size=32, checkpoint_every=2),
        "stage2": Stage2Config(
            steps=2, batch_size=2, crop_size=32, head="linear", head_channels=16, checkpoint_every=2
        ),
        "export_onnx": False,
    }
    base.update(kw)
    return ExperimentConfig(**base)  # type: ignore[arg-type]


def test_every_job_writes_the_report_with_cka_and_the_lead(domains: dict[str, DatasetSplit], tmp_path: Path) -> None:
    cb = RecordingCallbacks()
    cfg = _config(domains, references=["teacher", "student_frozen"], similarity_images=3)
    result = run_experiment(cfg, work_dir=tmp_path, callbacks=cb)

    report = result.report
    assert set(report["miou"]) == {"student", "teacher", "student_frozen"}
    assert report["miou"]["student"]["fog"] == pytest.approx(result.student["fog"].miou)
    assert set(report["cka_to_teacher"]) == {"student", "student_frozen"}  # the teacher row has no student encoder
    for per in report["cka_to_teacher"].values():
        assert set(per) == {"night", "fog", "source"} and all(0.0 <= v <= 1.0 for v in per.values())
    assert report["teacher_lead_carried"] is not None and set(report["teacher_lead_carried"]["per_domain"]) == {
        "night",
        "fog",
        "source",
    }
    assert any(e.startswith("evaluating: CKA to the teacher on fog: student ") for e in cb.events)
    on_disk = json.loads(result.exports["report"].read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert result.exports["report_chart"].stat().st_size > 1000
    readme = result.exports["readme"].read_text()
    assert (
        "## Robustness report" in readme and "[report.json](report.json)" in readme and "| student_frozen |" in readme
    )

    again = run_experiment(cfg, work_dir=tmp_path)  # a finished run reads its report back
    assert again.report == report


def test_no_teacher_no_cka_and_the_similarity_setting_is_checked(
    domains: dict[str, DatasetSplit], tmp_path: Path
) -> None:
    result = run_experiment(_config(domains, method="none", references=["student_frozen"]), work_dir=tmp_path)
    assert result.report["cka_to_teacher"] == {} and result.report["teacher_lead_carried"] is None
    assert set(result.report["miou"]) == {"student", "student_frozen"}
    with pytest.raises(ConfigError, match="similarity_images"):
        _config(domains, similarity_images=0)

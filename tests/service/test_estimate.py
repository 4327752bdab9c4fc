"""service/estimate.py: GPU-hours from a sample throughput table, and every trait/name has a cost rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

import pytest
from sqlalchemy.orm import Session

import gkd_catalog
from gkd_catalog.costs import TOKEN_HEAD_COSTS, load_table
from gkd_catalog.throughput import THROUGHPUT_PATH, record_gpu_check, rows_from_gpu_check
from service.estimate import REFERENCE_ROWS, TEACHER_IN_STAGE2, estimate_job
from service.models import Dataset
from service.schemas import JobSpec
from service.zoo import CURATED
from tests.service.factories import make_team, spec_dict

SAMPLE = {
    "kinds": {
        "Sample GPU": {"phases": {"stage1b": {"flops_per_s": 2.0e14}, "stage2/fpn": {"flops_per_s": 5.0e13}}},
        "Half-measured GPU": {"phases": {"stage1b": {"flops_per_s": 1.0e14}}},
    }
}


def _dataset(session: Session, team_id: str, name: str, images: int) -> None:
    report = {"ok": True, "splits": {"train": {"images": images, "pairs": images}, "val": {"images": 4, "pairs": 4}},
              "classes": {"names": [f"c{i}" for i in range(19)]}}  # fmt: skip
    session.add(Dataset(team_id=team_id, name=name, layout="folder", uri="file:///x", status="valid", report=report))
    session.flush()


def test_gpu_hours_are_flops_over_the_measured_rate(session: Session) -> None:
    team = make_team(session)
    _dataset(session, team.id, "src", 1000)
    _dataset(session, team.id, "tgt", 10)
    spec = JobSpec.model_validate(
        spec_dict(
            teacher={"model": "vit_base_patch14_dinov2"},
            student={"model": "deit_small_patch16_224"},
            stage1={"epochs": 4, "batch_size": 32, "image_size": 512},
            stage2={"steps": 100, "batch_size": 8, "crop_size": 512, "head": "fpn"},
            resources={"gpus": 2},
        )
    )
    est = estimate_job(session=session, team_id=team.id, spec=spec, throughput=SAMPLE)
    one_b, stage2 = est.phases
    assert one_b.steps == 125 and stage2.steps == 100  # 4 epochs of 1000 images at 32
    assert one_b.total_flops is not None and stage2.total_flops is not None
    sample, half = est.gpu_hours
    b_hours, s2_hours = one_b.gpu_hours[0].hours, stage2.gpu_hours[0].hours
    assert b_hours is not None and s2_hours is not None
    assert b_hours == pytest.approx(one_b.total_flops / 2.0e14 / 3600)
    assert s2_hours == pytest.approx(stage2.total_flops / 5.0e13 / 3600)
    assert sample.kind == "Sample GPU" and sample.hours == pytest.approx(b_hours + s2_hours)
    assert one_b.gpu_hours[1].hours == pytest.approx(one_b.total_flops / 1.0e14 / 3600)
    assert half.hours is None and half.reason is not None
    assert "no measured rate for stage2/fpn" in half.reason
    # Paper-scale step 1b (DINOv2 ViT-B teacher at the student's 32x32 grid, DeiT-S student, 512 px, 32 images):
    # teacher ~ 32 x 215 GFLOP, student ~ 3 x (32 clean + 16 masked) x 64 GFLOP, QSD heads < 1 TFLOP.
    assert one_b.flops_per_step is not None and one_b.peak_memory_gib is not None
    assert 1.4e13 < one_b.flops_per_step < 2.0e13
    assert 5 < one_b.peak_memory_gib < 40  # 16 images per GPU; the gpu_check measures the real figure
    asked = estimate_job(session=session, team_id=team.id, spec=spec, gpu_kinds=["B300"], throughput=SAMPLE)
    assert [h.kind for h in asked.gpu_hours] == ["B300"] and asked.gpu_hours[0].hours is None
    assert "measured: Sample GPU, Half-measured GPU" in (asked.gpu_hours[0].reason or "")


def test_every_name_and_trait_has_a_cost_rule() -> None:
    assert set(TEACHER_IN_STAGE2) == set(get_args(gkd_catalog.TeacherUse))
    assert set(REFERENCE_ROWS) == set(gkd_catalog.REFERENCES)
    assert set(TOKEN_HEAD_COSTS) == set(gkd_catalog.STAGE1_HEADS)
    table = load_table()
    assert set(table["models"]) == {m.name for m in CURATED}, "rerun python -m bench.cost_table"
    assert set(table["heads"]) == set(gkd_catalog.HEADS)
    for meta in CURATED:  # the same architectures as the zoo's figures (the table leaves out classifier heads)
        row = table["models"][meta.name]
        assert row["embed_dim"] == meta.embed_dim and 0.7 * meta.params_m < row["params"] / 1e6 < 1.01 * meta.params_m
    dims = {",".join(map(str, row["level_dims"])) for row in table["models"].values()}
    assert all(set(rows) == dims for rows in table["heads"].values())


def _gpu_check_report(smoke: bool, device: str) -> dict:
    step = {"status": "ok", "ms_per_step": 250.0, "flops_per_step": 5.0e13, "images_per_s": 128.0, "batch": 32}
    return {
        "meta": {"smoke": smoke, "device": device, "device_name": "NVIDIA H200", "torch": "2.13.0", "finished": 1.0},
        "plan": {"precision": "bf16"},
        "sections": {
            "stage1_1b": {**step, "teacher": "vit_base_patch14_dinov2", "student": "deit_small_patch16_224",
                          "image_size": 512},
            "stage1_1a": {"status": "failed", "error": "OOM"},
            "stage2_heads": {"status": "ok", "student": "deit_small_patch16_224", "image_size": 512,
                             "per_head": {"fpn": {**step, "ms_per_step": 100.0}, "mask2former": {"status": "failed"}}},
        },
    }  # fmt: skip


def test_gpu_check_files_its_rates(tmp_path: Path) -> None:
    rows = rows_from_gpu_check(_gpu_check_report(False, "cuda:0"))
    assert set(rows) == {"stage1b", "stage2/fpn"}  # failed sections price nothing
    assert rows["stage1b"]["flops_per_s"] == pytest.approx(2.0e14) and rows["stage2/fpn"]["flops_per_s"] == 5.0e14
    path = tmp_path / "throughput.json"
    path.write_text(THROUGHPUT_PATH.read_text())
    assert record_gpu_check(_gpu_check_report(True, "cpu"), path) is None  # smoke: toy sizes price nothing
    assert record_gpu_check(_gpu_check_report(False, "cuda:0"), path) == "NVIDIA H200"
    filed = json.loads(path.read_text())["kinds"]["NVIDIA H200"]
    assert filed["phases"] == rows and filed["precision"] == "bf16"

"""run_experiment end to end on tiny ViTs and tiny synthetic domains: results, exports, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from gkd_core.config import BackboneConfig, Stage1Config
from gkd_core.engine.callbacks import Phase, RecordingCallbacks
from gkd_core.engine.trainer import StopRequested
from gkd_core.errors import ConfigError
from gkd_core.experiment import DatasetSplit, ExperimentConfig, Stage2Config, evaluate_student, run_experiment
from gkd_core.export import load_student
from gkd_core.methods import get_method
from tests.gkd_core.experiment.synth import CLASSES, write_domain

STUDENT = {"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 8}
TEACHER = {"depth": 2, "embed_dim": 48, "num_heads": 2, "patch_size": 8}


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DatasetSplit]:
    root = tmp_path_factory.mktemp("domains")
    return {
        "source": DatasetSplit(write_domain(root / "src", seed=0, style=0), "folder", "train", "source"),
        "night": DatasetSplit(write_domain(root / "night", seed=1, style=1, split="val"), "folder", "val", "night"),
        "fog": DatasetSplit(write_domain(root / "fog", seed=2, style=2, count=2, split="val"), "folder", "val", "fog"),
    }


def _config(domains: dict[str, DatasetSplit], method: str = "gkd", **kw: object) -> ExperimentConfig:
    base: dict[str, object] = {
        "teacher": BackboneConfig("vit_small_patch16_224", img_size=32, overrides=TEACHER),
        "student": BackboneConfig("vit_tiny_patch16_224", img_size=32, overrides=STUDENT),
        "source": domains["source"],
        "targets": [domains["night"], domains["fog"]],
        "method": method,
        "stage1": Stage1Config(steps=3, batch_size=2, image_size=32, checkpoint_every=0),
        "stage2": Stage2Config(steps=3, batch_size=2, crop_size=32, head="fpn", head_channels=16, checkpoint_every=2),
        "references": [],
    }
    base.update(kw)
    return ExperimentConfig(**base)  # type: ignore[arg-type]


def test_gkd_end_to_end_with_teacher_reference(domains: dict[str, DatasetSplit], tmp_path: Path) -> None:
    cb = RecordingCallbacks()
    result = run_experiment(_config(domains, references=["teacher"]), work_dir=tmp_path, callbacks=cb)

    assert set(result.student) == {"night", "fog", "source"}
    assert set(result.references) == {"teacher"}
    assert set(result.references["teacher"]) == {"night", "fog", "source"}
    for metrics in [*result.student.values(), *result.references["teacher"].values()]:
        assert 0.0 <= metrics.miou <= 1.0 and len(metrics.per_class_iou) == len(CLASSES)
    assert result.student["fog"].images == 2 and result.student["night"].images == 4

    assert cb.phases == [Phase.STAGE1, Phase.STAGE2, Phase.REFERENCES, Phase.EVALUATING, Phase.EXPORTING]
    assert not [e for e in cb.events if e.startswith("phase")]  # phases travel typed, never as event text
    assert {p[0] for p in cb.progress} >= {"stage1b", "stage2", "ref_teacher", "evaluating", "exporting"}
    assert {r.stage for r in cb.metrics} >= {"stage1b", "stage2", "ref_teacher"}

    # Exports: safetensors reloads from the file alone and reproduces the reported metrics.
    assert set(result.exports) == {"student", "onnx", "model_card", "readme", "report", "report_chart"}
    again = evaluate_student(result.exports["student"], [domains["night"], domains["fog"]])
    for name in ("night", "fog"):
        assert again[name].miou == pytest.approx(result.student[name].miou, abs=1e-9)
    model, meta = load_student(result.exports["student"])
    assert meta.classes == CLASSES and meta.method == "gkd" and meta.num_classes == 4
    x = torch.rand(3, 3, 32, 32)
    session = ort.InferenceSession(str(result.exports["onnx"]), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        np.testing.assert_allclose(session.run(None, {"images": x.numpy()})[0], model(x).numpy(), atol=1e-4)
    card = json.loads(result.exports["model_card"].read_text())
    assert card["results"]["night"]["miou"] == pytest.approx(result.student["night"].miou)
    assert "model-index" in result.exports["readme"].read_text()

    # A finished experiment rerun trains nothing and returns the same results.
    cb2 = RecordingCallbacks()
    again_all = run_experiment(_config(domains, references=["teacher"]), work_dir=tmp_path, callbacks=cb2)
    assert not cb2.metrics
    assert again_all.student == result.student


class _StopAfterStage1(RecordingCallbacks):
    def should_stop(self) -> bool:
        return any(e.startswith("stage1b: finished") for e in self.events)


def test_stop_after_stage1_then_resume_does_not_rerun_stage1(domains: dict[str, DatasetSplit], tmp_path: Path) -> None:
    cfg = _config(domains, export_onnx=False, evaluate_source=False)
    first = _StopAfterStage1()
    with pytest.raises(StopRequested):
        run_experiment(cfg, work_dir=tmp_path, callbacks=first)
    assert {r.stage for r in first.metrics} == {"stage1b"}
    state = json.loads((tmp_path / "state.json").read_text())
    assert set(state["finished"]) == {"stage1"}
    distilled = (tmp_path / state["finished"]["stage1"]["file"]).read_bytes()

    second = RecordingCallbacks()
    result = run_experiment(cfg, work_dir=tmp_path, callbacks=second)
    assert "stage1b" not in {r.stage for r in second.metrics}
    assert "stage2" in {r.stage for r in second.metrics}
    assert any("stage1: already finished" in e for e in second.events)
    assert (tmp_path / state["finished"]["stage1"]["file"]).read_bytes() == distilled
    assert set(result.student) == {"night", "fog"}


@pytest.mark.parametrize("method", ["kd", "cwd", "feature_mse", "none"])
def test_single_stage_baselines_run_through_the_same_pipeline(
    domains: dict[str, DatasetSplit], tmp_path: Path, method: str
) -> None:
    stage2 = Stage2Config(steps=1, batch_size=2, crop_size=32, head="linear", head_channels=8, checkpoint_every=1)
    cfg = _config(
        domains,
        method,
        stage2=stage2,
        export_onnx=False,
        evaluate_source=False,
        finetune=get_method(method).traits.encoder == "either",
        targets=[domains["fog"]],
    )
    cb = RecordingCallbacks()
    result = run_experiment(cfg, work_dir=tmp_path, callbacks=cb)
    assert set(result.student) == {"fog"}
    names = {r.name for r in cb.metrics if r.stage == "stage2"}
    expected = {"kd": "kd", "cwd": "cwd", "feature_mse": "feature_mse", "none": "ce"}[method]
    assert expected in names
    if get_method(method).traits.teacher == "logits":  # the teacher's own head was trained on the source first
        assert "ref_teacher" in {r.stage for r in cb.metrics}
    assert Phase.STAGE1 not in cb.phases and cb.phases[0] == Phase.STAGE2


def test_config_errors_are_specific(domains: dict[str, DatasetSplit]) -> None:
    with pytest.raises(ConfigError, match=r"unknown method 'distill'.*registered: .*gkd"):
        _config(domains, "distill")
    with pytest.raises(ConfigError, match="finetune"):
        _config(domains, "gkd", finetune=True)
    with pytest.raises(ConfigError, match="unknown references"):
        _config(domains, references=["oracle"])
    with pytest.raises(ConfigError, match="crop_size=64"):
        _config(domains, stage2=Stage2Config(steps=1, crop_size=64))
    with pytest.raises(ConfigError, match="at least one target"):
        _config(domains, targets=[])


def test_proxy_step_at_its_own_geometry_and_epoch_schedule(domains: dict[str, DatasetSplit], tmp_path: Path) -> None:
    """1a at 48 px with the patch-8 student's kernel resized to 4, 1b by epochs at 32 px, stage 2 at 32 px."""
    one_b = Stage1Config(epochs=2, batch_size=2, image_size=32, checkpoint_every=0)
    one_a = Stage1Config(steps=2, batch_size=2, image_size=48, student_patch_size=4, checkpoint_every=0)
    cfg = _config(
        domains, proxy=domains["night"], stage1=one_b, proxy_stage1=one_a, export_onnx=False, evaluate_source=False
    )
    cb = RecordingCallbacks()
    result = run_experiment(cfg, work_dir=tmp_path, callbacks=cb)

    stage1a = [e for e in cb.events if e.startswith("stage1a token grids")]
    stage1b = [e for e in cb.events if e.startswith("stage1b token grids")]
    assert "patch kernel 8x8 -> 4x4" in stage1a[0] and "12x12 token grid at 48 px" in stage1a[0]
    assert "patch kernel 4x4 -> 8x8" in stage1b[0] and "4x4 token grid at 32 px" in stage1b[0]
    source_images = len(domains["source"].open(images_only=True))
    epochs_event = next(e for e in cb.events if e.startswith("stage1b: 2 epochs"))
    assert f"of {source_images:,} images at batch 2 = {math.ceil(2 * source_images / 2)} steps" in epochs_event
    assert max(r.step for r in cb.metrics if r.stage == "stage1a") == 2
    assert max(r.step for r in cb.metrics if r.stage == "stage1b") == math.ceil(2 * source_images / 2)
    assert set(result.student) == {"night", "fog"}


def test_proteus_distils_on_the_proxy_only_with_projection_heads(
    domains: dict[str, DatasetSplit], tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="proxy set only"):
        run_experiment(_config(domains, "proteus", export_onnx=False), work_dir=tmp_path / "none")
    cb = RecordingCallbacks()
    cfg = _config(domains, "proteus", proxy=domains["night"], export_onnx=False, evaluate_source=False)
    run_experiment(cfg, work_dir=tmp_path / "ok", callbacks=cb)
    assert {r.stage for r in cb.metrics} >= {"stage1a", "stage2"} and "stage1b" not in {r.stage for r in cb.metrics}
    assert any(e.startswith("stage1a:") and "heads linear" in e for e in cb.events)


def test_two_stage_mse_runs_both_steps_with_projection_heads(domains: dict[str, DatasetSplit], tmp_path: Path) -> None:
    cb = RecordingCallbacks()
    cfg = _config(domains, "two_stage_mse", proxy=domains["night"], export_onnx=False, evaluate_source=False)
    run_experiment(cfg, work_dir=tmp_path, callbacks=cb)
    assert {r.stage for r in cb.metrics} >= {"stage1a", "stage1b", "stage2"}
    assert sum(e.startswith(("stage1a:", "stage1b:")) and "heads linear" in e for e in cb.events) == 2


def test_extra_unlabelled_images_join_step_1b_and_are_named_in_the_model_card(
    domains: dict[str, DatasetSplit], tmp_path: Path
) -> None:
    cb = RecordingCallbacks()
    cfg = _config(domains, extra_images=[domains["fog"]], export_onnx=False, evaluate_source=False)
    result = run_experiment(cfg, work_dir=tmp_path, callbacks=cb)
    source_images = len(domains["source"].open(images_only=True))
    assert any(f"{source_images:,} source images + 2 extra unlabelled images from fog" in e for e in cb.events)
    card = json.loads(result.exports["model_card"].read_text())
    assert card["model"]["extra_stage1_images"] == ["fog"]
    assert "extra unlabelled images: fog" in result.exports["readme"].read_text()
    with pytest.raises(ConfigError, match="no source step"):
        _config(domains, "kd", extra_images=[domains["fog"]])


def test_a_size_mismatched_source_pair_is_skipped_with_an_event(tmp_path: Path) -> None:
    from PIL import Image

    root = write_domain(tmp_path / "src", seed=0, style=0, count=5)
    Image.new("L", (20, 20)).save(root / "masks" / "train" / "img3.png")  # the label no longer fits its image
    source = DatasetSplit(root, "folder", "train", "source")
    target = DatasetSplit(write_domain(tmp_path / "fog", seed=2, style=2, count=2, split="val"), "folder", "val", "fog")
    cb = RecordingCallbacks()
    cfg = _config({"source": source, "night": target, "fog": target}, "none", targets=[target],
                  export_onnx=False, evaluate_source=False)
    run_experiment(cfg, work_dir=tmp_path / "work", callbacks=cb)
    skipped = [e for e in cb.events if "pair(s) skipped" in e]
    assert len(skipped) == 1 and skipped[0].startswith("source: 1 image/label pair(s) skipped: img3")


@pytest.mark.parametrize("method", ["kd", "gkd"])
def test_mask2former_serves_single_and_two_stage_methods(
    domains: dict[str, DatasetSplit], tmp_path: Path, method: str
) -> None:
    """KD distils on the semantic map Mask2Former's inference produces while training on its set loss."""
    stage2 = Stage2Config(
        steps=2, batch_size=2, crop_size=32, head="mask2former", head_channels=16, head_queries=3, head_layers=2,
        checkpoint_every=5,
    )
    cb = RecordingCallbacks()
    cfg = _config(domains, method, stage2=stage2, export_onnx=False, evaluate_source=False, targets=[domains["fog"]])
    result = run_experiment(cfg, work_dir=tmp_path, callbacks=cb)
    names = {r.name for r in cb.metrics if r.stage == "stage2"}
    assert {"cls", "mask", "dice"} <= names and ("kd" in names) == (method == "kd")
    assert 0.0 <= result.student["fog"].miou <= 1.0
    card = json.loads(result.exports["model_card"].read_text())
    assert card["model"]["head"] == "mask2former" and card["model"]["head_options"]["num_queries"] == 3


def test_benchmark_averages_test_time_resize_and_stage2_epochs(
    domains: dict[str, DatasetSplit], tmp_path: Path
) -> None:
    from dataclasses import replace

    night = replace(domains["night"], group="synth", resize=(24, 24))
    fog = replace(domains["fog"], group="synth")
    stage2 = Stage2Config(epochs=1.0, batch_size=2, crop_size=32, head="linear", head_channels=8, checkpoint_every=5,
                          base_size=32, cat_max_ratio=0.75)
    cb = RecordingCallbacks()
    cfg = _config(domains, "none", targets=[night, fog], stage2=stage2, export_onnx=False, evaluate_source=False)
    result = run_experiment(cfg, work_dir=tmp_path, callbacks=cb)
    pairs = len(domains["source"].open())
    assert any(e == f"stage2: 1 epochs of {pairs:,} labelled pairs at batch 2 = {math.ceil(pairs / 2)} steps"
               for e in cb.events)
    assert max(r.step for r in cb.metrics if r.stage == "stage2") == math.ceil(pairs / 2)
    mean = (result.student["night"].miou + result.student["fog"].miou) / 2
    assert result.averages["student"] == pytest.approx({"targets": mean, "synth": mean})
    card = json.loads(result.exports["model_card"].read_text())
    assert card["averages"]["student"]["synth"] == pytest.approx(mean)
    assert "## Averages" in result.exports["readme"].read_text()


def test_speed_overrides_reach_every_training_stage(domains: dict[str, DatasetSplit], tmp_path: Path) -> None:
    cb = RecordingCallbacks()
    overrides = {"attention": "eager", "fused_adamw": True}
    run_experiment(_config(domains, speed_overrides=overrides), work_dir=tmp_path, callbacks=cb)
    lines = [e for e in cb.events if "speed options" in e]
    assert sorted(e.split(":")[0] for e in lines) == ["stage1b", "stage2"], cb.events
    assert all("attention eager, fused AdamW on" in e for e in lines), lines
    with pytest.raises(ConfigError, match="unknown speed options"):
        _config(domains, speed_overrides={"turbo": True})


def test_prepared_stores_train_exactly_like_the_image_files(domains: dict[str, DatasetSplit], tmp_path: Path) -> None:
    # 32 px images are below both stages' stored short side, so the stores hold native pixels and the
    # run must be the same run, step for step, as reading the PNG files.
    plain = run_experiment(_config(domains), work_dir=tmp_path / "plain", callbacks=RecordingCallbacks())
    cb = RecordingCallbacks()
    prepared = run_experiment(
        _config(domains, prepared_dir=tmp_path / "prepared"), work_dir=tmp_path / "prepared_run", callbacks=cb
    )
    used = [e for e in cb.events if "reading a prepared store" in e]
    assert len(used) == 2 and all(e.startswith("source:") for e in used), cb.events  # stage 1b and stage 2
    assert len([p for p in (tmp_path / "prepared").iterdir() if p.is_dir()]) == 2  # images-only and labelled
    for name, metrics in plain.student.items():
        assert prepared.student[name].miou == metrics.miou, name

"""What a job ships is scored as shipped: the ONNX file (and its INT8 version) per domain, beside PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from gkd_core.config import BackboneConfig, Stage1Config
from gkd_core.deployed import OnnxSegmenter, calibration_windows, quantize_int8
from gkd_core.engine.callbacks import RecordingCallbacks
from gkd_core.errors import CheckpointError, ConfigError
from gkd_core.experiment import DatasetSplit, ExperimentConfig, Stage2Config, run_experiment
from gkd_core.export import export_onnx, load_student
from tests.gkd_core.experiment.synth import write_domain

STUDENT = {"depth": 2, "embed_dim": 32, "num_heads": 2, "patch_size": 8}
TEACHER = {"depth": 2, "embed_dim": 48, "num_heads": 2, "patch_size": 8}


@pytest.fixture(scope="module")
def domains(tmp_path_factory: pytest.TempPathFactory) -> dict[str, DatasetSplit]:
    root = tmp_path_factory.mktemp("deployed")
    return {
        "source": DatasetSplit(write_domain(root / "src", seed=0, style=0, count=6), "folder", "train", "source"),
        "night": DatasetSplit(write_domain(root / "night", seed=1, style=1, split="val"), "folder", "val", "night"),
        "fog": DatasetSplit(write_domain(root / "fog", seed=2, style=2, count=2, split="val"), "folder", "val", "fog"),
    }


def _config(domains: dict[str, DatasetSplit], **kw: object) -> ExperimentConfig:
    base: dict[str, object] = {
        "teacher": BackboneConfig("vit_small_patch16_224", img_size=32, overrides=TEACHER),
        "student": BackboneConfig("vit_tiny_patch16_224", img_size=32, overrides=STUDENT),
        "source": domains["source"],
        "targets": [domains["night"], domains["fog"]],
        "stage1": Stage1Config(steps=2, batch_size=2, image_size=32, checkpoint_every=0),
        "stage2": Stage2Config(steps=4, batch_size=2, crop_size=32, head="fpn", head_channels=16, checkpoint_every=4),
    }
    base.update(kw)
    return ExperimentConfig(**base)  # type: ignore[arg-type]


def test_onnx_and_int8_files_are_scored_per_domain_beside_pytorch(
    domains: dict[str, DatasetSplit], tmp_path: Path
) -> None:
    cb = RecordingCallbacks()
    cfg = _config(domains, export_int8=True, int8_calibration_images=4)
    result = run_experiment(cfg, work_dir=tmp_path, callbacks=cb)

    assert set(result.deployed) == {"onnx", "int8"}
    for kind in ("onnx", "int8"):
        assert set(result.deployed[kind]) == {"night", "fog", "source"}
        assert result.deployed[kind]["fog"].images == 2
    for domain, metrics in result.student.items():  # same protocol and weights: the fp32 export agrees
        assert result.deployed["onnx"][domain].miou == pytest.approx(metrics.miou, abs=0.005)
    int8 = onnx.load(str(result.exports["int8"]))
    assert any(node.op_type == "QuantizeLinear" for node in int8.graph.node)
    assert result.exports["int8"].stat().st_size < result.exports["onnx"].stat().st_size
    assert any(e.startswith("exporting: int8 on night: mIoU") and "points)" in e for e in cb.events)
    assert any("calibrated on 4 source windows" in e for e in cb.events)

    card = json.loads(result.exports["model_card"].read_text())
    assert card["deployed"]["onnx"]["night"]["miou"] == pytest.approx(result.deployed["onnx"]["night"].miou)
    readme = result.exports["readme"].read_text()
    assert "## Deployed files" in readme and "| night |" in readme.split("## Deployed files")[1]

    again = run_experiment(_config(domains, export_int8=True, int8_calibration_images=4), work_dir=tmp_path)
    assert again.deployed == result.deployed  # read back from the finished state, not recomputed


def test_without_onnx_nothing_is_deployed_and_int8_alone_is_refused(
    domains: dict[str, DatasetSplit], tmp_path: Path
) -> None:
    result = run_experiment(_config(domains, method="none", export_onnx=False), work_dir=tmp_path)
    assert result.deployed == {} and "onnx" not in result.exports
    with pytest.raises(ConfigError, match="needs export_onnx"):
        _config(domains, export_onnx=False, export_int8=True)
    with pytest.raises(ConfigError, match="int8_calibration_images"):
        _config(domains, int8_calibration_images=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, domains: dict[str, DatasetSplit]) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("student")
    result = run_experiment(_config(domains, method="none"), work_dir=work)
    return result.exports["student"], result.exports["onnx"]


def test_onnx_segmenter_runs_the_file_and_matches_torch(exported: tuple[Path, Path], tmp_path: Path) -> None:
    student, onnx_path = exported
    model, _ = load_student(student)
    segmenter = OnnxSegmenter(onnx_path)
    assert segmenter.window == 32
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(segmenter(x), model(x), atol=1e-4, rtol=1e-4)
    # Another model's file gives other logits: the segmenter really runs the file it was given.
    torch.manual_seed(1)
    for p in model.head.parameters():
        p.data.normal_()
    other = OnnxSegmenter(export_onnx(model, tmp_path / "other.onnx", 32))
    assert not torch.allclose(other(x), segmenter(x), atol=1e-3)


def test_missing_or_corrupt_onnx_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        OnnxSegmenter(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match=r"junk\.onnx is not a loadable ONNX model"):
        OnnxSegmenter(junk)


def test_calibration_windows_are_seeded_padded_crops(domains: dict[str, DatasetSplit]) -> None:
    dataset = domains["fog"].open()
    windows = calibration_windows(dataset, 48, 5, seed=3)
    assert len(windows) == 2  # one per image, never more than the split holds
    assert all(w.shape == (1, 3, 48, 48) and w.dtype == np.float32 for w in windows)
    assert all(float(np.abs(w[:, :, 32:, :]).max()) == 0.0 for w in windows)  # 32 px images, zero-padded
    again = calibration_windows(dataset, 16, 2, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, calibration_windows(dataset, 16, 2, seed=3), strict=True))
    with pytest.raises(ConfigError, match="at least one image"):
        calibration_windows(dataset, 16, 0)


def test_int8_quantization_keeps_the_predictions_of_the_fp32_file(exported: tuple[Path, Path], tmp_path: Path) -> None:
    _, onnx_path = exported
    windows = [torch.rand(1, 3, 32, 32).numpy() for _ in range(6)]
    int8_path = quantize_int8(onnx_path, tmp_path / "student.int8.onnx", windows)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.int8.onnx"]  # no temporary files left
    x = torch.rand(4, 3, 32, 32)
    fp32, int8 = OnnxSegmenter(onnx_path)(x), OnnxSegmenter(int8_path)(x)
    assert (fp32.argmax(1) == int8.argmax(1)).float().mean() > 0.8
    assert not torch.equal(fp32, int8)
    with pytest.raises(ConfigError, match="calibration windows"):
        quantize_int8(onnx_path, tmp_path / "none.onnx", [])

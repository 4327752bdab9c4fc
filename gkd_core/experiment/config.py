"""What one experiment is: the dataset splits it reads and the typed config the worker builds from a JobSpec."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gkd_core.config import BackboneConfig, Stage1Config
from gkd_core.engine.speed import SpeedOptions
from gkd_core.errors import ConfigError
from gkd_core.stages.stage2 import Stage2Config

REFERENCES = ("teacher", "student_frozen", "student_finetuned")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class DatasetSplit:
    """One split of a local dataset directory; ``name`` labels its results (default: folder/split)."""

    root: Path
    layout: str = "folder"
    split: str = "train"
    name: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    # Evaluation only: the test-time scale (w, h) images are fitted to (None: native size), and the
    # benchmark group whose average this domain enters (e.g. "GTAV" over Cityscapes, BDD, Mapillary).
    resize: tuple[int, int] | None = None
    group: str | None = None

    @property
    def label(self) -> str:
        return self.name or f"{Path(self.root).name}/{self.split}"

    def open(self, *, transform: Any = None, images_only: bool = False) -> Any:
        from gkd_core.data.dataset import open_dataset

        return open_dataset(
            self.root, self.layout, self.split, transform=transform, images_only=images_only, **self.options
        )


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything one job needs (the worker builds this from a JobSpec)."""

    teacher: BackboneConfig
    student: BackboneConfig
    source: DatasetSplit
    targets: list[DatasetSplit]
    method: str = "gkd"
    proxy: DatasetSplit | None = None
    stage1: Stage1Config = field(default_factory=Stage1Config)
    # Step 1a on ``proxy`` (None: the same options as ``stage1``, which configures step 1b).
    proxy_stage1: Stage1Config | None = None
    # Unlabelled images added to step 1b's source images (a team's own; named in the model card, since
    # target-domain images here change the domain-generalization protocol).
    extra_images: list[DatasetSplit] = field(default_factory=list)
    stage2: Stage2Config = field(default_factory=Stage2Config)
    references: list[str] = field(default_factory=list)
    seed: int = 0
    device: str = "cpu"
    precision: str = "fp32"
    finetune: bool = False  # methods whose encoder is "either" (none): fine-tune it instead of freezing it
    name: str = "gkd-student"
    export_onnx: bool = True
    # Also ship an INT8 ONNX model (onnxruntime static quantization calibrated on this many source windows).
    export_int8: bool = False
    int8_calibration_images: int = 32
    # Windows per domain on which the robustness report compares student and teacher features (linear CKA).
    similarity_images: int = 16
    evaluate_source: bool = True
    # The in-domain row: a held-out split of the source (e.g. its val split). Without one, the source's
    # training split is scored, which overstates in-domain accuracy.
    source_eval: DatasetSplit | None = None
    # Decode-once stores of the training splits (gkd_core.data.prepared), one folder per split and size,
    # beside the dataset cache. None reads the image files as they are. A stage uses its store when it
    # reads the split more than once over and the store fits on that disk (see prepared.decide).
    prepared_dir: Path | None = None
    # The worker's GKD_SPEED as {option: value}, over the speed defaults measured for the device
    # (gkd_core.engine.speed); empty keeps them.
    speed_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from gkd_core.methods import get_method

        traits = get_method(self.method).traits  # ConfigError naming the registered methods
        unknown = [r for r in self.references if r not in REFERENCES]
        if unknown:
            raise ConfigError(f"unknown references {unknown}; choose from {REFERENCES}")
        if len(set(self.references)) != len(self.references):
            raise ConfigError(f"references are listed twice: {self.references}")
        if not self.targets:
            raise ConfigError("an experiment needs at least one target domain to evaluate")
        labels = [t.label for t in self.targets]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"target names must be unique, got {labels}")
        if self.stage2.crop_size != self.student.img_size:
            raise ConfigError(
                f"stage2.crop_size={self.stage2.crop_size} differs from the student's img_size="
                f"{self.student.img_size}; ViT students are built for one input size"
            )
        if self.extra_images and (not traits.two_stage or traits.proxy == "only"):
            raise ConfigError(f"extra_images: method {self.method!r} has no source step (1b) to add them to")
        if self.finetune and traits.encoder != "either":
            raise ConfigError(
                f"finetune=True does not apply to method {self.method!r}: its encoder is {traits.encoder} in stage 2"
            )
        if self.export_int8 and not self.export_onnx:
            raise ConfigError("export_int8 quantizes the ONNX export: it needs export_onnx=True")
        if self.similarity_images < 1:
            raise ConfigError(f"similarity_images must be >= 1, got {self.similarity_images}")
        if self.int8_calibration_images < 1:
            raise ConfigError(f"int8_calibration_images must be >= 1, got {self.int8_calibration_images}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        SpeedOptions().with_overrides(self.speed_overrides)  # ConfigError naming the bad part

    @property
    def two_stage(self) -> bool:
        from gkd_core.methods import get_method

        return get_method(self.method).traits.two_stage

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready description (paths as strings) for checkpoints and the model card."""

        def conv(v: Any) -> Any:
            if isinstance(v, Path):
                return str(v)
            if isinstance(v, dict):
                return {k: conv(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [conv(x) for x in v]
            return v

        return conv(asdict(self))

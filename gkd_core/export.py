"""Export the distilled student with its head: safetensors, ONNX and a model card.

The exported module takes float [0, 1] RGB images ``[B, 3, H, W]`` and returns class logits at the
same size; normalisation lives inside the backbone. The safetensors file carries everything needed
to rebuild the module (a JSON header under the ``gkd_export`` metadata key), so a later evaluation
or a user needs nothing but that one file.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from gkd_core.errors import CheckpointError
from gkd_core.models.heads import HEADS, build_head
from gkd_core.stages.stage2 import SegmentationModel

_logger = logging.getLogger(__name__)

METADATA_KEY = "gkd_export"
FORMAT_VERSION = 1
ONNX_OPSET = 17

BackboneBuilder = Callable[[Any], nn.Module]


@dataclass(frozen=True)
class ExportMeta:
    """What the loader needs to rebuild the module, plus facts for the model card.

    ``head_options`` are the head's constructor options beyond widths and channels (Mask2Former's
    queries, layers, ...); :func:`save_student` fills them from the head itself.
    """

    model: str
    num_classes: int
    head: str
    head_channels: int
    indices: list[int]
    image_size: int
    backbone_img_size: int
    overrides: dict[str, Any] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    method: str = "gkd"
    teacher: str | None = None
    name: str = "gkd-student"
    head_options: dict[str, Any] = field(default_factory=dict)
    # Unlabelled sets added to step 1b (``ExperimentConfig.extra_images``): named because images of the
    # target domains change the domain-generalization protocol behind the reported numbers.
    extra_stage1_images: list[str] = field(default_factory=list)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ExportMeta:
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


ONNX_FILE = "student.onnx"
"""The exported ONNX student's file name (an artifact of that name when a job ships it)."""


def _default_builder(meta: ExportMeta) -> nn.Module:
    from gkd_core.config import BackboneConfig
    from gkd_core.models.backbone import build_backbone

    cfg = BackboneConfig(model=meta.model, weights="none", img_size=meta.backbone_img_size, overrides=meta.overrides)
    return build_backbone(cfg)


def save_student(model: SegmentationModel, path: Path, meta: ExportMeta) -> Path:
    """Write the module's weights and the JSON rebuild header into one safetensors file.

    The header's ``head_options`` are taken from the head module (what was trained is what the file
    rebuilds); options given in ``meta`` must agree with them.

    Raises:
        CheckpointError: ``meta.head`` names another head class, or ``meta.head_options`` disagree.
    """
    path = Path(path)
    meta = _with_head_options(model, meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_model(model, str(tmp), metadata={METADATA_KEY: meta.to_json()})
    tmp.replace(path)
    _logger.info("exported student (%s + %s head) to %s", meta.model, meta.head, path)
    return path


def _with_head_options(model: SegmentationModel, meta: ExportMeta) -> ExportMeta:
    head_cls = HEADS.get(meta.head)
    if head_cls is None or not isinstance(model.head, head_cls):
        raise CheckpointError(f"ExportMeta says head {meta.head!r} but the model's head is {type(model.head).__name__}")
    options = model.head.options()
    if meta.head_options and meta.head_options != options:
        raise CheckpointError(f"ExportMeta.head_options {meta.head_options} differ from the head's own {options}")
    return replace(meta, head_options=options)


def read_export_meta(path: Path) -> ExportMeta:
    """Read the rebuild header of an exported safetensors file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"exported model {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise CheckpointError(f"{path} is not a readable safetensors file: {exc}") from exc
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path} has no {METADATA_KEY!r} metadata; it was not written by gkd_core.export")
    try:
        return ExportMeta.from_json(metadata[METADATA_KEY])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: bad {METADATA_KEY!r} metadata: {exc}") from exc


def load_student(
    path: Path,
    *,
    device: str | torch.device = "cpu",
    backbone_builder: Callable[[ExportMeta], nn.Module] | None = None,
) -> tuple[SegmentationModel, ExportMeta]:
    """Rebuild the exported module (eval mode) from the safetensors file alone."""
    meta = read_export_meta(path)
    if meta.format_version > FORMAT_VERSION:
        raise CheckpointError(f"{path} has export format {meta.format_version}; this gkd_core reads {FORMAT_VERSION}")
    backbone = (backbone_builder or _default_builder)(meta)
    if meta.head not in HEADS:
        raise CheckpointError(f"{path} has a {meta.head!r} head; this gkd_core knows {sorted(HEADS)}")
    with safe_open(str(path), framework="pt") as f:
        dims = _head_in_dims(f, len(meta.indices), meta.head)
    head = build_head(meta.head, dims, meta.num_classes, channels=meta.head_channels, **meta.head_options)
    model = SegmentationModel(backbone, head, meta.indices, frozen_encoder=True)
    missing, unexpected = load_model(model, str(path), strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit {meta.model} + {meta.head} head: missing {sorted(missing)[:3]}, "
            f"unexpected {sorted(unexpected)[:3]}"
        )
    return model.to(device).eval(), meta


def _head_in_dims(f: Any, levels: int, head: str) -> list[int]:
    """Input widths of the head, read from its per-level input layer's weights (CNN levels differ in width)."""
    dims = []
    for i in range(levels):
        key = "head." + HEADS[head].in_dims_key.format(i)
        if key not in f.keys():  # noqa: SIM118 - safe_open handles have keys(), not __contains__
            raise CheckpointError(f"exported file lacks {key!r}; cannot infer the {head} head's input widths")
        dims.append(int(f.get_slice(key).get_shape()[1]))
    return dims


def export_onnx(model: nn.Module, path: Path, image_size: int, *, opset: int = ONNX_OPSET) -> Path:
    """ONNX export with a dynamic batch axis (input ``images``, output ``logits``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    param = next(model.parameters())
    example = torch.rand(2, 3, image_size, image_size, device=param.device, dtype=param.dtype)
    tmp = path.with_name(path.name + ".tmp")
    with warnings.catch_warnings():
        # Spatial sizes are traced as constants on purpose: only the batch axis is dynamic.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # The TorchScript exporter is chosen on purpose (no onnxscript rewrite, stable on CPU torch).
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export", category=DeprecationWarning)
        try:
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=["images"],
                output_names=["logits"],
                dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
        except Exception as exc:  # the legacy tracer fails on some models; the dynamo exporter may not
            _logger.warning("TorchScript ONNX export failed (%s); retrying with the dynamo exporter", exc)
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.onnx.export(
                model,
                (example,),
                str(tmp),
                input_names=["images"],
                output_names=["logits"],
                dynamic_shapes={"images": {0: batch}},
                opset_version=max(opset, 18),
                dynamo=True,
            )
    tmp.replace(path)
    _logger.info("exported ONNX (opset %d, dynamic batch) to %s", opset, path)
    return path


def metrics_to_dict(metrics: Any) -> dict[str, Any]:
    """A JSON-ready dict of a ``SegMetrics`` (or an equivalent mapping); NaN becomes None."""
    if isinstance(metrics, Mapping):
        data = dict(metrics)
    elif hasattr(metrics, "to_dict"):
        data = metrics.to_dict()
    else:
        data = {k: getattr(metrics, k) for k in ("miou", "per_class_iou", "pixel_accuracy", "images")}

    def clean(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return {k: clean(v) for k, v in data.items()}


def write_model_card(
    out_dir: Path,
    meta: ExportMeta,
    results: Mapping[str, Any],
    references: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    source: str | None = None,
    averages: Mapping[str, Mapping[str, float]] | None = None,
    deployed: Mapping[str, Mapping[str, Any]] | None = None,
    report: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``model_card.json`` and a ``README.md`` whose YAML front matter holds a model-index.

    ``deployed`` maps each deployable file kind ("onnx", "int8") to its per-domain metrics, shown beside
    the PyTorch student's so a reader sees what the shipped file scores, domain by domain. ``report`` is
    the robustness report (gkd_core.robustness) written beside the card; the card links and summarises it.

    ``averages`` maps each model ("student", references) to its mean mIoU over all targets and each
    benchmark group (the paper's "GTAV avg").

    ``results`` maps each evaluated domain to its metrics; mIoU is reported in percent in the
    model-index (the paper's unit) and as a fraction in the JSON.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    res = {d: metrics_to_dict(m) for d, m in results.items()}
    refs = {r: {d: metrics_to_dict(m) for d, m in per.items()} for r, per in (references or {}).items()}
    avgs = {m: dict(per) for m, per in (averages or {}).items()}
    shipped = {k: {d: metrics_to_dict(m) for d, m in per.items()} for k, per in (deployed or {}).items()}
    card = {
        "model": asdict(meta),
        "source_domain": source,
        "results": res,
        "references": refs,
        "averages": avgs,
        "deployed": shipped,
    }
    json_path = out_dir / "model_card.json"
    json_path.write_text(json.dumps(card, indent=2, sort_keys=True))

    index_results = []
    for domain, m in res.items():
        metrics = [{"type": "mean_iou", "name": "mIoU", "value": _percent(m.get("miou"))}]
        if m.get("pixel_accuracy") is not None:
            metrics.append({"type": "pixel_accuracy", "name": "pixel accuracy", "value": _percent(m["pixel_accuracy"])})
        index_results.append(
            {
                "task": {"type": "image-segmentation", "name": "Semantic Segmentation"},
                "dataset": {"name": domain, "type": domain},
                "metrics": metrics,
            }
        )
    front = {
        "library_name": "gkd_core",
        "tags": ["semantic-segmentation", "knowledge-distillation", meta.method],
        "model-index": [{"name": meta.name, "results": index_results}],
    }
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).rstrip(),
        "---",
        "",
        f"# {meta.name}",
        "",
        f"A `{meta.model}` student distilled with **{meta.method}**"
        + (f" from `{meta.teacher}`" if meta.teacher else "")
        + f", with a `{meta.head}` head{_head_details(meta)} for {meta.num_classes} classes"
        + (f", trained on the `{source}` domain." if source else "."),
        "",
        f"Input: float RGB in [0, 1], {meta.image_size} px windows; output: {_output_kind(meta.head)}.",
        "",
        "| domain | mIoU % | pixel acc % |",
        "|---|---|---|",
    ]
    for domain, m in res.items():
        lines.append(f"| {domain} | {_fmt(m.get('miou'))} | {_fmt(m.get('pixel_accuracy'))} |")
    if avgs:
        lines += ["", "## Averages (mIoU %)", "", "| model | " + " | ".join(next(iter(avgs.values()))) + " |"]
        lines.append("|---|" + "---|" * len(next(iter(avgs.values()))))
        for model_name, means in avgs.items():
            lines.append(f"| {model_name} | " + " | ".join(_fmt(v) for v in means.values()) + " |")
    if refs:
        lines += ["", "## Reference rows (same head and budget)", ""]
        lines += ["| reference | domain | mIoU % |", "|---|---|---|"]
        for ref, per in refs.items():
            for domain, m in per.items():
                lines.append(f"| {ref} | {domain} | {_fmt(m.get('miou'))} |")
    if shipped:
        lines += _deployed_lines(res, shipped)
    if report:
        lines += _report_lines(report)
    if meta.extra_stage1_images:
        lines += [
            "",
            "Stage 1 also distilled on extra unlabelled images: " + ", ".join(meta.extra_stage1_images) + ". If "
            "these come from the target domains, the numbers above are not domain-generalization results.",
        ]
    if meta.classes:
        lines += ["", "Classes: " + ", ".join(meta.classes)]
    readme = out_dir / "README.md"
    readme.write_text("\n".join(lines) + "\n")
    return {"model_card": json_path, "readme": readme}


def _deployed_lines(res: Mapping[str, Mapping[str, Any]], shipped: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """A table of each deployable file's mIoU per domain beside PyTorch's, with the difference in points."""
    kinds = list(shipped)
    header = "| domain | PyTorch | " + " | ".join(f"{k} | {k} diff" for k in kinds) + " |"
    lines = ["", "## Deployed files (mIoU %, run by onnxruntime)", "", header, "|---|---|" + "---|---|" * len(kinds)]
    for domain, m in res.items():
        cells = [_fmt(m.get("miou"))]
        for kind in kinds:
            value = shipped[kind].get(domain, {}).get("miou")
            torch_value = m.get("miou")
            diff = "n/a" if value is None or torch_value is None else f"{(value - torch_value) * 100:+.2f}"
            cells += [_fmt(value), diff]
        lines.append(f"| {domain} | " + " | ".join(cells) + " |")
    return lines


def _report_lines(report: Mapping[str, Any]) -> list[str]:
    """A link to report.json / report.png and the report's headline figures."""
    lines = [
        "",
        "## Robustness report",
        "",
        "Every row per domain: [report.json](report.json), chart: [report.png](report.png).",
    ]
    carried = (report.get("teacher_lead_carried") or {}).get("target_average")
    if carried is not None:
        lines.append(
            f"On the target average the student carries {carried * 100:.0f}% of the teacher's lead over no-KD."
        )
    cka = report.get("cka_to_teacher") or {}
    if cka:
        domains = list(report.get("domains") or next(iter(cka.values())))
        lines += ["", "Linear CKA to the teacher's features:", "", "| model | " + " | ".join(domains) + " |"]
        lines.append("|---|" + "---|" * len(domains))
        for name, per in cka.items():
            lines.append(
                f"| {name} | " + " | ".join("n/a" if per.get(d) is None else f"{per[d]:.3f}" for d in domains) + " |"
            )
    return lines


def _output_kind(head: str) -> str:
    head_cls = HEADS.get(head)
    return head_cls.output_kind if head_cls is not None else "logits per class"


def _head_details(meta: ExportMeta) -> str:
    """A parenthesis with the head's shape options (queries, layers), or nothing."""
    shown = {"num_queries": "queries", "num_layers": "decoder layers", "encoder_layers": "pixel-decoder layers"}
    parts = [f"{meta.head_options[k]} {label}" for k, label in shown.items() if k in meta.head_options]
    return f" ({meta.head_channels} channels, {', '.join(parts)})" if parts else ""


def _percent(v: Any) -> float | None:
    return None if v is None else round(float(v) * 100.0, 2)


def _fmt(v: Any) -> str:
    return "n/a" if v is None else f"{float(v) * 100.0:.2f}"


def export_all(
    model: SegmentationModel,
    meta: ExportMeta,
    out_dir: Path,
    results: Mapping[str, Any],
    references: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    source: str | None = None,
    onnx: bool = True,
    averages: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Path]:
    """safetensors + ONNX + model card into ``out_dir``; returns artifact name -> path."""
    out_dir = Path(out_dir)
    model = model.eval()
    meta = _with_head_options(model, meta)  # the card shows the head's options too
    paths = {"student": save_student(model, out_dir / "student.safetensors", meta)}
    if onnx:
        paths["onnx"] = export_onnx(model, out_dir / ONNX_FILE, meta.image_size)
    paths.update(write_model_card(out_dir, meta, results, references, source=source, averages=averages))
    return paths

"""The model zoo: a curated table (no torch needed) plus lazy timm look-ups for other names.

Feature-matching rule (checked before a job is queued):
1. both models must expose timm's feature API, ``forward_intermediates`` (the pipeline taps
   features with it);
2. for gkd and proteus the teacher must be a plain ViT ("vit" kind: one patch-token grid, the
   foundation-model setting the method distils from); hierarchical or CNN teachers only work
   with kd, cwd, feature_mse and none;
3. image and crop sizes must be multiples of the student's patch size (ViT students).

Licence lineage: every curated model records the licence of the pretrained weights timm serves for it
(``weights: timm``, its default tag) with the source the licence is stated in, whether it allows commercial
use, and what the weights were trained on. :func:`job_lineage` turns a JobSpec into the lineage of the
job's student: the teacher's and student's weights, the training sets, and a warning when the teacher's
licence forbids commercial use, restricts it, or is unknown. What is not known is marked ``unknown``.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Literal

_logger = logging.getLogger(__name__)

Kind = Literal["vit", "cnn", "hierarchical"]
Commercial = Literal["yes", "restricted", "no", "unknown", "n/a"]
"""Whether a licence allows commercial use: yes, with restrictions, no, unknown; n/a: no pretrained weights."""

_IMAGENET_NOTE = (
    "trained on ImageNet, whose terms of access (https://www.image-net.org/download.php) allow non-commercial "
    "research and education only; whether those terms bind weights trained on it is unsettled"
)


@dataclass(frozen=True)
class WeightsLicence:
    """The licence of one set of pretrained weights and where it is stated.

    ``tag`` is the timm pretrained tag these facts are about (timm's default for the architecture).
    """

    tag: str
    licence: str
    url: str
    commercial: Commercial
    training_data: str
    note: str = ""


def _timm_card(name: str, tag: str) -> str:
    return f"https://huggingface.co/timm/{name}.{tag}"


def _dinov2(name: str) -> WeightsLicence:
    return WeightsLicence(
        "lvd142m",
        "Apache-2.0",
        "https://github.com/facebookresearch/dinov2/blob/main/LICENSE",
        "yes",
        "LVD-142M (curated web images, Meta)",
        "code and weights relicensed from CC-BY-NC-4.0 to Apache-2.0 on 2023-08-31 "
        "(https://github.com/facebookresearch/dinov2/pull/182)",
    )


def _dinov3(name: str) -> WeightsLicence:
    return WeightsLicence(
        "lvd1689m",
        "DINOv3 License",
        "https://ai.meta.com/resources/models-and-libraries/dinov3-license/",
        "restricted",
        "LVD-1689M (web images, Meta)",
        "a custom licence: commercial use is allowed, but it lists prohibited uses (among them military, "
        "nuclear and ITAR-controlled applications), requires trade-control compliance and redistribution "
        "under the same terms, and downloads are gated; a student distilled from it may count as a derivative - "
        "review the terms before shipping it",
    )


def _eva02(name: str) -> WeightsLicence:
    return WeightsLicence(
        "mim_in22k",
        "MIT",
        "https://github.com/baaivision/EVA/blob/master/LICENSE",
        "yes",
        "ImageNet-22k (masked image modelling against an EVA-CLIP teacher)",
        _IMAGENET_NOTE,
    )


def _timm_imagenet(
    name: str, tag: str, data: str, licence: str = "Apache-2.0", url: str | None = None
) -> WeightsLicence:
    return WeightsLicence(tag, licence, url or _timm_card(name, tag), "yes", data, _IMAGENET_NOTE)


@dataclass(frozen=True)
class ModelMeta:
    """What the service needs to know about a backbone."""

    name: str
    family: str
    kind: Kind
    params_m: float
    embed_dim: int
    patch_size: int | None
    feature_api: str = "forward_intermediates"
    roles: tuple[str, ...] = ("teacher", "student")
    weights: WeightsLicence | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["roles"] = list(self.roles)
        return data


_T, _S, _TS = ("teacher",), ("student",), ("teacher", "student")


def _m(name: str, family: str, kind: Kind, params_m: float, dim: int, patch: int | None, roles: tuple[str, ...],
       weights: Callable[[str], WeightsLicence] | WeightsLicence | None) -> ModelMeta:
    licence = weights(name) if callable(weights) else weights
    return ModelMeta(name, family, kind, params_m, dim, patch, roles=roles, weights=licence)


def _in1k(tag: str, data: str = "ImageNet-1k", **kw: str) -> Callable[[str], WeightsLicence]:
    return lambda name: _timm_imagenet(name, tag, data, **kw)


_DEIT_URL = "https://github.com/facebookresearch/deit/blob/main/LICENSE"  # Apache-2.0 since 2021-01 (PR #27)
_VIT_URL = "https://github.com/google-research/vision_transformer/blob/main/LICENSE"  # AugReg weights

# Figures measured with timm 1.0 (meta device): parameters in millions, final feature width. Licences are
# those of timm's default pretrained tag (timm 1.0.31 pretrained_cfg agrees: tests/api/test_lineage_api.py).
CURATED: tuple[ModelMeta, ...] = (
    _m("vit_small_patch14_dinov2", "dinov2", "vit", 22.1, 384, 14, _T, _dinov2),
    _m("vit_base_patch14_dinov2", "dinov2", "vit", 86.6, 768, 14, _T, _dinov2),
    _m("vit_large_patch14_dinov2", "dinov2", "vit", 304.4, 1024, 14, _T, _dinov2),
    _m("vit_giant_patch14_dinov2", "dinov2", "vit", 1136.5, 1536, 14, _T, _dinov2),
    _m("vit_small_patch14_reg4_dinov2", "dinov2", "vit", 22.1, 384, 14, _T, _dinov2),
    _m("vit_small_patch16_dinov3", "dinov3", "vit", 21.6, 384, 16, _T, _dinov3),
    _m("vit_base_patch16_dinov3", "dinov3", "vit", 85.6, 768, 16, _T, _dinov3),
    _m("vit_large_patch16_dinov3", "dinov3", "vit", 303.1, 1024, 16, _T, _dinov3),
    _m("eva02_small_patch14_224", "eva02", "vit", 21.6, 384, 14, _T, _eva02),
    _m("eva02_base_patch14_224", "eva02", "vit", 85.8, 768, 14, _T, _eva02),
    _m("eva02_large_patch14_224", "eva02", "vit", 303.3, 1024, 14, _T, _eva02),
    _m("vit_base_patch16_clip_224", "clip", "vit", 86.6, 768, 16, _T, _in1k(
        "laion2b_ft_in12k_in1k", "LAION-2B image-text pairs (OpenCLIP), fine-tuned on ImageNet-12k then ImageNet-1k")),
    _m("vit_base_patch16_224", "vit", "vit", 86.6, 768, 16, _TS, _in1k(
        "augreg2_in21k_ft_in1k", "ImageNet-21k, fine-tuned on ImageNet-1k", url=_VIT_URL)),
    _m("vit_small_patch16_224", "vit", "vit", 22.1, 384, 16, _TS, _in1k(
        "augreg_in21k_ft_in1k", "ImageNet-21k, fine-tuned on ImageNet-1k", url=_VIT_URL)),
    _m("vit_tiny_patch16_224", "vit", "vit", 5.7, 192, 16, _S, _in1k(
        "augreg_in21k_ft_in1k", "ImageNet-21k, fine-tuned on ImageNet-1k", url=_VIT_URL)),
    _m("deit_small_patch16_224", "deit", "vit", 22.1, 384, 16, _S, _in1k("fb_in1k", url=_DEIT_URL)),
    _m("deit_tiny_patch16_224", "deit", "vit", 5.7, 192, 16, _S, _in1k("fb_in1k", url=_DEIT_URL)),
    _m("resnet18", "resnet", "cnn", 11.7, 512, None, _S, _in1k("a1_in1k")),
    _m("resnet50", "resnet", "cnn", 25.6, 2048, None, _S, _in1k("a1_in1k")),
    _m("convnext_tiny", "convnext", "cnn", 28.6, 768, None, _S, _in1k(
        "in12k_ft_in1k", "ImageNet-12k (a subset of ImageNet-21k), fine-tuned on ImageNet-1k")),
    _m("efficientnet_b0", "efficientnet", "cnn", 5.3, 1280, None, _S, _in1k("ra_in1k")),
    _m("mobilenetv3_large_100", "mobilenetv3", "cnn", 5.5, 960, None, _S, _in1k("ra_in1k")),
    _m("swin_tiny_patch4_window7_224", "swin", "hierarchical", 28.3, 768, 4, _S, _in1k(
        "ms_in1k", licence="MIT", url="https://github.com/microsoft/Swin-Transformer/blob/main/LICENSE")),
    # timm's tiny test models: for smoke tests and the synthetic demo (seconds on a CPU).
    _m("test_vit", "test", "vit", 0.37, 64, 16, _TS, _in1k("r160_in1k")),
    _m("test_resnet", "test", "cnn", 0.47, 96, None, _S, _in1k("r160_in1k")),
    _m("test_convnext", "test", "cnn", 0.27, 64, None, _S, _in1k("r160_in1k")),
)
_BY_NAME = {meta.name: meta for meta in CURATED}


def curated_models() -> list[ModelMeta]:
    """The curated zoo, teachers first."""
    return list(CURATED)


def _arch(name: str) -> str:
    """Strip a timm pretrained tag (``vit_base_patch14_dinov2.lvd142m`` -> the architecture)."""
    return name.split(".", 1)[0]


@lru_cache(maxsize=1)
def _timm_names() -> tuple[str, ...]:
    import gkd_core  # noqa: F401  (installs the torchvision shim before timm)

    # isort: split
    import timm

    return tuple(timm.list_models())


@lru_cache(maxsize=256)
def _inspect_timm(arch: str) -> ModelMeta | None:
    """Build the model on the meta device (no memory, no weights) and read its feature metadata."""
    if arch not in _timm_names():
        return None
    import gkd_core  # noqa: F401

    # isort: split
    import timm
    import torch

    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    patch = getattr(getattr(model, "patch_embed", None), "patch_size", None)
    patch_size = int(patch[0]) if isinstance(patch, tuple | list) else (int(patch) if patch else None)
    embed = getattr(model, "embed_dim", None)
    hierarchical = not isinstance(embed, int) or not hasattr(model, "blocks")
    kind: Kind = "vit" if patch_size and not hierarchical else ("hierarchical" if patch_size else "cnn")
    return ModelMeta(
        name=arch,
        family=arch.split("_", 1)[0],
        kind=kind,
        params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        embed_dim=int(getattr(model, "num_features", 0) or 0),
        patch_size=patch_size,
        feature_api="forward_intermediates" if hasattr(model, "forward_intermediates") else "none",
    )


def lookup(name: str) -> ModelMeta | None:
    """Metadata for a model name (curated table first, then timm); None when timm does not know it."""
    arch = _arch(name)
    return _BY_NAME.get(arch) or _inspect_timm(arch)


def close_matches(name: str, limit: int = 5) -> list[str]:
    """Known names that look like ``name`` (for 'did you mean' messages)."""
    candidates = list(_BY_NAME) + list(_timm_names())
    return difflib.get_close_matches(_arch(name), candidates, n=limit, cutoff=0.6)


# ----- licence lineage -----------------------------------------------------------------------

_ARTIFACT = re.compile(r"^artifact://([0-9a-fA-F-]{36})/(.+)$")
_SEVERITY: dict[str, int] = {"n/a": 0, "yes": 1, "restricted": 2, "unknown": 3, "no": 4}
_MAX_DEPTH = 4  # weights from a job whose weights come from a job ...: follow at most this many

SpecLookup = Callable[[str], Mapping[str, Any] | None]
"""The spec of one of the team's jobs by id (None when there is none): how weights from a job are traced."""


@dataclass(frozen=True)
class WeightsLineage:
    """Where one model's starting weights come from and under which licence."""

    role: str
    model: str
    weights: str
    source: Literal["none", "timm", "uri", "job"]
    licence: str | None
    licence_url: str | None
    commercial: Commercial
    training_data: str | None = None
    note: str = ""
    tag: str | None = None
    derived_from_job: str | None = None

    def text(self) -> str:
        """One sentence for the job's events."""
        head = f"{self.role} {self.model}"
        if self.source == "none":
            return f"{head}: no pretrained weights (random initialisation, no licence inherited)"
        where = {"timm": f"timm weights {self.tag or '(default tag)'}", "uri": self.weights,
                 "job": f"weights of job {self.derived_from_job}"}[self.source]
        licence = self.licence or "licence unknown"
        url = f" {self.licence_url}" if self.licence_url else ""
        data = f"; trained on {self.training_data}" if self.training_data else ""
        return f"{head} ({where}): {licence}, commercial use: {self.commercial}{url}{data}"


@dataclass(frozen=True)
class Lineage:
    """A job's student lineage: starting weights, training sets, and warnings about the teacher's licence."""

    teacher: WeightsLineage
    student: WeightsLineage
    source: str | None
    proxy: str | None
    extra_images: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def text(self) -> str:
        """The lineage as the job's first event states it."""
        sets = f"source {self.source or '-'}, proxy {self.proxy or 'none'}, extra images "
        sets += ", ".join(self.extra_images) if self.extra_images else "none"
        return f"{self.teacher.text()}; {self.student.text()}; training sets: {sets}"


def _ref(value: Any) -> str | None:
    if not isinstance(value, Mapping) or not value.get("dataset"):
        return None
    return f"{value['dataset']}:{value.get('split') or 'train'}"


def _tag(name: str) -> str | None:
    return name.split(".", 1)[1] if "." in name else None


def weights_lineage(
    role: str, model: str, weights: str, *, lookup: SpecLookup | None = None, depth: int = 0
) -> WeightsLineage:
    """The lineage of ``weights`` (a JobSpec's ``weights`` field) for ``model``.

    ``timm`` weights take the curated record of the architecture when the requested tag is the recorded one;
    any other name or tag is ``unknown``. Weights from another job (``artifact://``) are traced through
    ``lookup`` to that job's teacher and student (the least permissive of the two wins); without a lookup,
    or past a few generations, they are ``unknown``.
    """
    if weights == "none":
        return WeightsLineage(role, model, weights, "none", None, None, "n/a")
    if weights == "timm":
        meta = _BY_NAME.get(_arch(model))
        record = meta.weights if meta is not None else None
        tag = _tag(model) or (record.tag if record else None)
        if record is None or tag != record.tag:
            if meta is None:
                what = "a model outside the curated zoo"
            elif record is None:
                what = "a model without a licence record"
            else:
                what = f"tag {tag!r} (the record is about {record.tag!r})"
            return WeightsLineage(role, model, weights, "timm", None, None, "unknown", tag=tag,
                                  note=f"{what}: its weights' licence is not recorded here; check its timm model card")
        return WeightsLineage(role, model, weights, "timm", record.licence, record.url, record.commercial,
                              record.training_data, record.note, tag=record.tag)
    match = _ARTIFACT.match(weights)
    if match is None:
        return WeightsLineage(role, model, weights, "uri", None, None, "unknown",
                              note="weights supplied by the team: the service does not know their licence")
    job_id = match.group(1)
    spec = lookup(job_id) if lookup is not None and depth < _MAX_DEPTH else None
    if spec is None:
        return WeightsLineage(role, model, weights, "job", None, None, "unknown", derived_from_job=job_id,
                              note=f"weights of job {job_id}: see that job's lineage")
    parent = job_lineage(spec, lookup=lookup, depth=depth + 1)
    parts = [p for p in (parent.teacher, parent.student) if p.source != "none"]
    worst: Commercial = max((p.commercial for p in parts), key=_SEVERITY.__getitem__, default="n/a")
    licences = sorted({p.licence or "unknown" for p in parts})
    return WeightsLineage(
        role, model, weights, "job",
        licence=" + ".join(licences) if licences else "none inherited",
        licence_url=None,
        commercial=worst,
        training_data=", ".join(x for x in (parent.source, parent.proxy, *parent.extra_images) if x) or None,
        note=f"trained in job {job_id} from {parent.teacher.text()}; {parent.student.text()}",
        derived_from_job=job_id,
    )


def job_lineage(spec: Mapping[str, Any], *, lookup: SpecLookup | None = None, depth: int = 0) -> Lineage:
    """The lineage of a job's student from its spec (as stored on the job row) and the zoo.

    Warnings name a teacher whose weights' licence forbids commercial use, restricts it, or is unknown.
    """

    def part(key: str) -> Mapping[str, Any]:
        value = spec.get(key)
        return value if isinstance(value, Mapping) else {}

    def model(role: str) -> WeightsLineage:
        ref = part(role)
        return weights_lineage(role, str(ref.get("model", "")), str(ref.get("weights", "none")),
                               lookup=lookup, depth=depth)

    teacher, student = model("teacher"), model("student")
    stage1 = part("stage1")
    extra = [r for r in (_ref(x) for x in stage1.get("extra_images") or []) if r]
    warnings = []
    if teacher.commercial in ("no", "restricted", "unknown"):
        why = {
            "no": "forbids commercial use",
            "restricted": "allows commercial use only under its own restrictions",
            "unknown": "is unknown to the service",
        }[teacher.commercial]
        name = teacher.licence or "the licence"
        warnings.append(
            f"teacher {teacher.model} ({teacher.weights}): {name} {why}; the distilled student learns from it - "
            f"check the terms before using the student commercially"
            + (f" ({teacher.licence_url})" if teacher.licence_url else "")
            + (f". {teacher.note}" if teacher.note else "")
        )
    return Lineage(teacher, student, _ref(spec.get("source")), _ref(spec.get("proxy")), extra, warnings)

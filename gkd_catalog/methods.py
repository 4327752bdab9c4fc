"""Distillation methods and their traits (METHOD.md: GKD and the baselines it is compared with).

A trait is what the rest of the service needs to know about a method without running it: which
stages it has, how it uses the teacher, which stage-1 token head it uses by default and whether
the student encoder trains in stage 2. gkd_core's method modules declare the same traits next to
their implementation; the contract test keeps the two equal.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass
from typing import Literal

TeacherUse = Literal["unused", "tokens", "logits", "features"]
"""How a method uses the teacher.

- ``unused``: no teacher at all.
- ``tokens``: stage 1 distils the teacher's final-layer tokens (a ViT teacher is required).
- ``logits``: the teacher gets its own segmentation head trained on the source first; its logits
  are the distillation target in stage 2.
- ``features``: the teacher's tokens are a feature target while stage 2 trains.
"""

EncoderMode = Literal["frozen", "trainable", "either"]
"""Whether the student encoder trains in stage 2 (``either``: the spec's ``stage2.finetune`` picks)."""

ProxyUse = Literal["unused", "optional", "only"]
"""What a method does with a proxy set: none (no stage 1), step 1a when given, or stage 1 on it alone (required)."""


@dataclass(frozen=True)
class MethodInfo:
    """One method: its name, a short title, a one-sentence summary and its traits."""

    name: str
    title: str
    summary: str
    stages: tuple[str, ...]
    teacher: TeacherUse
    stage1_head: str | None
    encoder: EncoderMode
    proxy: ProxyUse = "unused"

    @property
    def two_stage(self) -> bool:
        """True when a label-free stage 1 comes before the segmentation stage."""
        return "stage1" in self.stages

    def traits(self) -> dict[str, object]:
        """The fields gkd_core must agree on (everything but the prose)."""
        return {"stages": self.stages, "teacher": self.teacher, "stage1_head": self.stage1_head,
                "encoder": self.encoder, "proxy": self.proxy}

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["stages"] = list(self.stages)
        data["two_stage"] = self.two_stage
        return data


def _methods(*infos: MethodInfo) -> dict[str, MethodInfo]:
    return {info.name: info for info in infos}


METHODS: dict[str, MethodInfo] = _methods(
    MethodInfo(
        "gkd", "GKD",
        "The paper: label-free distillation through query-based soft distillation heads (proxy step 1a, "
        "then source step 1b), then a segmentation head on the frozen student.",
        ("stage1", "stage2"), "tokens", "qsd", "frozen", "optional",
    ),
    MethodInfo(
        "proteus", "Proteus",
        "Proteus (Zhang et al., 2024): distillation on the proxy set only (needs a proxy), LayerNorm + Linear "
        "heads, patch loss on the masked positions; then a head on the frozen student.",
        ("stage1", "stage2"), "tokens", "linear", "frozen", "only",
    ),
    MethodInfo(
        "two_stage_mse", "Two-stage MSE",
        "GKD's decoupled pipeline (proxy step 1a, source step 1b, frozen stage 2) with LayerNorm + Linear heads "
        "instead of QSD heads: the paper's ablation that isolates QSD.",
        ("stage1", "stage2"), "tokens", "linear", "frozen", "optional",
    ),
    MethodInfo(
        "kd", "Vanilla KD",
        "Single stage: fine-tune student and head with cross-entropy plus pixel-wise KL to the logits of "
        "the teacher's own head trained on the source (Hinton et al.).",
        ("stage2",), "logits", None, "trainable",
    ),
    MethodInfo(
        "cwd", "CWD",
        "Single stage: fine-tune student and head with cross-entropy plus channel-wise distillation of the "
        "teacher model's logits (Shu et al.).",
        ("stage2",), "logits", None, "trainable",
    ),
    MethodInfo(
        "feature_mse", "Feature MSE",
        "Single stage: fine-tune student and head with cross-entropy plus MSE between projected student "
        "tokens and teacher tokens.",
        ("stage2",), "features", None, "trainable",
    ),
    MethodInfo(
        "none", "No distillation",
        "No teacher: a head on the frozen student, or student and head fine-tuned together "
        "(stage2.finetune).",
        ("stage2",), "unused", None, "either",
    ),
)


def method(name: str) -> MethodInfo:
    """The catalogue entry of ``name``; ``KeyError`` naming the known methods (and close matches)."""
    try:
        return METHODS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(METHODS), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise KeyError(f"unknown method {name!r}{hint}; known: {', '.join(METHODS)}") from None

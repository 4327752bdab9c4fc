"""How much the frozen students see like the teacher on each domain: linear CKA of final features.

A distilled student that carries the teacher's robustness should keep features like the teacher's on
styles it never saw; this measures it per target domain (and on the source) for every model whose
encoder is the student architecture (the student, and the no-KD references), against the frozen
pretrained teacher. Features are final-normed patch tokens of seeded windows of each domain's images;
the teacher's token map is resized to the student's grid, and at most ``MAX_TOKENS`` tokens enter.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gkd_core.deployed import calibration_windows
from gkd_core.engine.similarity import linear_cka
from gkd_core.models.teacher import resize_tokens
from gkd_core.stages.stage2 import SegmentationModel

if TYPE_CHECKING:
    from gkd_core.experiment.run import ExperimentRun

MAX_TOKENS = 4096
STUDENT_ENCODERS = ("student", "student_frozen", "student_finetuned")
"""Result rows whose encoder is the student architecture (the reference names come from REFERENCES)."""


def teacher_ran(run: ExperimentRun) -> bool:
    """The job used the teacher (distillation or the teacher reference), so comparing with it is meaningful."""
    return run.method.traits.teacher != "unused" or "teacher" in run.cfg.references


@torch.no_grad()
def _tokens(backbone: Any, windows: torch.Tensor, grid: tuple[int, int] | None) -> tuple[torch.Tensor, tuple[int, int]]:
    out = backbone.forward_tokens(windows)
    patches = out.patches.float()
    if grid is not None and tuple(out.grid) != grid:
        patches = resize_tokens(patches, tuple(out.grid), grid)
    return patches.reshape(-1, patches.shape[-1]), grid or tuple(out.grid)


def teacher_similarity(run: ExperimentRun, models: dict[str, SegmentationModel]) -> dict[str, dict[str, float]]:
    """Linear CKA to the teacher per model (with a student encoder) and domain; {} when the teacher never ran."""
    if not teacher_ran(run):
        return {}
    students = {name: m for name, m in models.items() if name in STUDENT_ENCODERS}
    if "teacher" in models:
        teacher = models["teacher"].backbone
    else:
        size = run.stage2.crop_size
        teacher = run.build_backbone(replace(run.cfg.teacher, img_size=size)).to(run.device).eval()
    size = run.stage2.crop_size
    out: dict[str, dict[str, float]] = {name: {} for name in students}
    for ref in run.domains():
        windows = calibration_windows(ref.open(), size, run.cfg.similarity_images, seed=run.cfg.seed)
        batch = torch.from_numpy(np.concatenate(windows)).to(run.device)
        index: torch.Tensor | None = None
        for name, model in students.items():
            s_tokens, grid = _tokens(model.backbone.eval(), batch, None)
            t_tokens, _ = _tokens(teacher, batch, grid)
            if index is None:  # the same seeded tokens for every model of this domain
                generator = torch.Generator().manual_seed(run.cfg.seed)
                index = torch.randperm(s_tokens.shape[0], generator=generator)[:MAX_TOKENS]
            out[name][ref.label] = linear_cka(s_tokens[index.to(s_tokens.device)], t_tokens[index.to(t_tokens.device)])
        run.cb.on_event(
            f"evaluating: CKA to the teacher on {ref.label}: "
            + ", ".join(f"{name} {out[name][ref.label]:.3f}" for name in students)
        )
    return out

"""The frozen teacher of GKD stage 1 and the matching of its token grid to the student's.

Paper (Lv et al., CVPR 2026, Sec. 4.1): the teacher is frozen, in eval mode and without gradients;
only its final-normed CLS and patch tokens are used. A patch-14 DINOv2 teacher and a patch-16
student are matched by resizing the teacher's 14x14 patch-embedding kernel to 16x16 (bicubic) and
its position embeddings to the student grid, so both give the same grid (32x32 at 512 px). Where
grids still differ (e.g. a CNN student), the teacher token map is resized bilinearly at run time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from gkd_core.config import BackboneConfig
from gkd_core.models.backbone import Backbone, TokenOutput, build_backbone

_logger = logging.getLogger(__name__)


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast runs on this device (CPU always; CUDA when the card has bf16)."""
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    return False


@contextlib.contextmanager
def autocast_bf16(device: torch.device, enabled: bool = True) -> Iterator[None]:
    """bf16 autocast on ``device`` where supported; otherwise autocast is switched off (true fp32),
    also when an enclosing bf16 training context is active."""
    use_bf16 = enabled and bf16_supported(device)
    if device.type not in ("cpu", "cuda"):
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
        yield


def resize_tokens(patches: torch.Tensor, grid: tuple[int, int], target: tuple[int, int]) -> torch.Tensor:
    """Resize a B x N x C token map from ``grid`` to ``target`` bilinearly (row-major tokens)."""
    if grid == target:
        return patches
    b, _, c = patches.shape
    fmap = patches.transpose(1, 2).reshape(b, c, grid[0], grid[1])
    fmap = F.interpolate(fmap, size=target, mode="bilinear", align_corners=False)
    return fmap.flatten(2).transpose(1, 2)


class Teacher(nn.Module):
    """A frozen backbone: eval mode, no gradients, fp32 outputs, optional bf16 autocast inside.

    Args:
        backbone: the teacher backbone; its parameters are frozen here.
        precision: ``"bf16"`` runs the forward under bf16 autocast where supported, ``"fp32"`` does not.
    """

    def __init__(self, backbone: Backbone, precision: str = "fp32") -> None:
        super().__init__()
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"teacher precision must be 'fp32' or 'bf16', got {precision!r}")
        self.backbone = backbone
        self.precision = precision
        self.target_grid: tuple[int, int] | None = None
        self.alignment = "teacher not aligned to a student"
        backbone.requires_grad_(False)
        backbone.eval()

    @property
    def embed_dim(self) -> int:
        """Width of the teacher tokens."""
        return self.backbone.embed_dim

    def train(self, mode: bool = True) -> Teacher:
        """Keep the teacher in eval mode whatever the enclosing task asks for."""
        super().train(mode)
        self.backbone.eval()
        return self

    @torch.no_grad()
    def forward(self, x: torch.Tensor, grid: tuple[int, int] | None = None) -> TokenOutput:
        """Final-normed teacher tokens of the unmasked images, resized to ``grid`` (or the aligned grid)."""
        with autocast_bf16(x.device, enabled=self.precision == "bf16"):
            out = self.backbone.forward_tokens(x)
        patches = out.patches.float()
        target = grid or self.target_grid
        if target is not None and target != out.grid:
            patches = resize_tokens(patches, out.grid, target)
        return TokenOutput(cls=out.cls.float(), patches=patches, grid=target or out.grid)


def align_teacher_to_student(teacher: Teacher, student: Backbone) -> str:
    """Make the teacher's token grid match the student's at the student's image size.

    ViT teacher + ViT student with different patch sizes: resize the teacher's patch kernel and
    position embeddings (paper). Any remaining grid difference (CNN student, odd sizes): the teacher
    token map is resized bilinearly at every forward.

    Returns:
        A human-readable description of what was done, for the job's events.
    """
    size = student.img_size
    t_bb = teacher.backbone
    steps: list[str] = []
    can_resize = t_bb.is_vit and callable(getattr(t_bb.model, "set_input_size", None))
    if can_resize and student.is_vit and t_bb.patch_size != student.patch_size:
        steps.append("teacher " + t_bb.set_geometry(img_size=size, patch_size=student.patch_size))
    elif can_resize and t_bb.img_size != size:
        steps.append("teacher " + t_bb.set_geometry(img_size=size))
    t_bb.requires_grad_(False)
    t_bb.eval()
    t_grid, s_grid = t_bb.grid_for(size), student.grid_for(size)
    if t_grid != s_grid:
        teacher.target_grid = s_grid
        steps.append(
            f"teacher token map {t_grid[0]}x{t_grid[1]} resized bilinearly to the student grid "
            f"{s_grid[0]}x{s_grid[1]} at {size} px"
        )
    else:
        teacher.target_grid = None
        steps.append(f"teacher and student both give a {s_grid[0]}x{s_grid[1]} token grid at {size} px")
    teacher.alignment = "; ".join(steps)
    _logger.info("token grids: %s", teacher.alignment)
    return teacher.alignment


def build_teacher(cfg: BackboneConfig, student: Backbone | None = None, precision: str = "fp32") -> Teacher:
    """Build a frozen teacher; when ``student`` is given, align its token grid to the student's."""
    teacher = Teacher(build_backbone(cfg), precision=precision)
    if student is not None:
        align_teacher_to_student(teacher, student)
    return teacher

"""Backbones (teacher and student) built from timm models, and the frozen teacher wrapper."""

from gkd_core.models.backbone import Backbone, TokenOutput, build_backbone
from gkd_core.models.teacher import Teacher, align_teacher_to_student, build_teacher, resize_tokens

__all__ = [
    "Backbone",
    "Teacher",
    "TokenOutput",
    "align_teacher_to_student",
    "build_backbone",
    "build_teacher",
    "resize_tokens",
]

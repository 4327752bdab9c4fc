"""Heads, stage-1 token heads, dataset layouts, reference rows and job phases, by name.

Each table maps a name to a short description; the order of every table is the order users see
(dashboard selects, docs, help text).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Entry:
    """A named component with a one-line description."""

    name: str
    summary: str

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class LayoutInfo(Entry):
    """A dataset layout: whether it carries labels and which options it accepts."""

    labels: bool = True
    options: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["options"] = list(self.options)
        return data


def _table(*entries: Entry) -> dict[str, Entry]:
    return {e.name: e for e in entries}


HEADS: dict[str, Entry] = _table(
    Entry("linear", "Multi-scale linear probe: per-level 1x1 projections, concatenated, BatchNorm, 1x1 classifier."),
    Entry("fpn", "FPN-style head: lateral 1x1, top-down sum, 3x3 smoothing, fused at stride 4."),
    Entry("mask2former", "Mask2Former (the paper's head): deformable-attention pixel decoder, 9-layer masked-attention "
          "decoder with 100 queries, Hungarian-matched set loss; semantic map softmax(class) x sigmoid(mask)."),
)
"""Stage-2 decode heads (gkd_core.models.heads.HEADS)."""

STAGE1_HEADS: dict[str, Entry] = _table(
    Entry("qsd", "Query-based soft distillation head: attention over the teacher's tokens (GKD)."),
    Entry("linear", "LayerNorm + Linear projection head (Proteus and the two-stage MSE ablation)."),
)
"""Stage-1 patch-token heads (gkd_core.losses.qsd.TOKEN_HEADS)."""

LAYOUTS: dict[str, LayoutInfo] = {
    info.name: info
    for info in (
        LayoutInfo("cityscapes", "leftImg8bit/{split}/{city}/ images, gtFine/ train-id or label-id masks",
                   options=("label_type",)),
        LayoutInfo("gta5", "images/ and labels/ (Cityscapes label ids), flat (split 'all') or per split"),
        LayoutInfo("acdc", "rgb_anon/{condition}/{split}/ images, gt/{condition}/{split}/ train-id masks",
                   options=("condition", "label_type")),
        LayoutInfo("bdd100k", "images/10k/{split}/*.jpg, labels/sem_seg/masks/{split}/*.png (train ids)"),
        LayoutInfo("mapillary", "{split}/images/, {split}/labels/ (Cityscapes train ids, or raw Vistas v1.2 ids "
                   "with label_type=vistas)", options=("label_type",)),
        LayoutInfo("mmseg", "img_dir/{split}/, ann_dir/{split}/*.png, classes.json (Potsdam, Vaihingen)",
                   options=("reduce_zero_label", "classes")),
        LayoutInfo("folder", "images/{split}/*, masks/{split}/*.png of the same stem, classes.json"),
        LayoutInfo("imagenet", "images only: ImageNet-style class folders {split}/{wnid}/*.JPEG, read recursively",
                   labels=False),
        LayoutInfo("images", "images only: a folder of images, read recursively; {split}/ subfolders or split 'all'",
                   labels=False),
        LayoutInfo("image_list", "images only: {split}.txt in the root lists image paths relative to the root",
                   labels=False),
    )
}
"""Dataset layouts (gkd_core.data.LAYOUTS)."""

REFERENCES: dict[str, Entry] = _table(
    Entry("teacher", "The frozen teacher with the same head trained on the source: the upper reference."),
    Entry("student_frozen", "The student without distillation, frozen, with the same head."),
    Entry("student_finetuned", "The student without distillation, fine-tuned together with the head."),
)
"""Reference rows a job can add beside its student (gkd_core.experiment.REFERENCES)."""

PHASES: tuple[str, ...] = ("stage1", "stage2", "references", "evaluating", "exporting")
"""Every phase a running job can be in, in order (gkd_core.engine.callbacks.Phase)."""


def job_phases(stages: tuple[str, ...], has_references: bool) -> list[str]:
    """The phases one job goes through: its method's stages, references if any, evaluation, export."""
    wanted = set(stages) | {"evaluating", "exporting"}
    if has_references:
        wanted.add("references")
    return [p for p in PHASES if p in wanted]

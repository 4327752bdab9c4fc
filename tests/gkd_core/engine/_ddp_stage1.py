"""Tiny stage-1 runs for the data-parallel tests, in this process or on torchrun's gloo ranks.

``python -m torch.distributed.run --standalone --nproc-per-node 2 -m tests.gkd_core.engine._ddp_stage1 OUT
SCENARIO...`` runs each scenario on every rank; rank 0 writes ``OUT/<name>.pt`` (losses by step,
student weights, the masks each rank drew and the image ids each rank read, in order). A scenario is
``name:steps:stop_at:mask_probability``
(``stop_at`` 0: run to the end); its checkpoints go to ``OUT/<name>/``, so a later run can resume
them with another world size.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

import gkd_core  # noqa: F401  (torchvision shim before timm)
from gkd_core.config import Stage1Config
from gkd_core.engine import RecordingCallbacks, StepBatches, adamw_cosine, distributed, fit
from gkd_core.models import build_backbone, build_teacher
from gkd_core.stages import Stage1Task
from gkd_core.stages import stage1 as stage1_module
from tests.gkd_core.models.tiny import tiny_student, tiny_teacher

GLOBAL_BATCH = 8
LR = 1e-3


class NoisyImages:
    """24 fixed images (3 steps an epoch, so a stop at step 2 is mid-epoch); each fetch adds flip and
    noise from the (per-sample seeded) global RNG."""

    def __init__(self, size: int = 24) -> None:
        self.images = torch.rand(size, 3, 32, 32, generator=torch.Generator().manual_seed(3))
        self.fetched: list[int] = []  # image ids in the order this process read them (no loader workers)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self.fetched.append(index)
        image = self.images[index]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        return {"image": (image + 0.05 * torch.randn_like(image)).clamp(0, 1)}


def run(work_dir: Path, *, steps: int, stop_at: int = 0, mask_probability: float = 0.0) -> dict[str, Any]:
    """Train the tiny pair on this process's shard (or alone); return what rank 0 saw."""
    torch.manual_seed(0)  # the same initial weights on every rank and in every run
    student = build_backbone(tiny_student(32))
    teacher = build_teacher(tiny_teacher(32), student)
    cfg = Stage1Config(steps=steps, batch_size=GLOBAL_BATCH, image_size=32, mask_probability=mask_probability,
                       teacher_precision="fp32", checkpoint_every=1)  # fmt: skip
    task = Stage1Task(student, teacher, cfg)
    optimizer, scheduler = adamw_cosine(task, LR, steps=steps, min_lr=1e-4)
    images = NoisyImages()
    batches = StepBatches(images, GLOBAL_BATCH, seed=5, num_workers=0)
    callbacks = RecordingCallbacks(stop_at_step=stop_at or None)
    masks: list[list[int]] = []
    make_mask = stage1_module.make_patch_mask

    def recording_mask(batch: int, *args: Any, **kwargs: Any) -> torch.Tensor:
        mask = make_mask(batch, *args, **kwargs)
        masks.append([batch, *mask.any(dim=1).nonzero().flatten().tolist()])
        return mask

    stage1_module.make_patch_mask = recording_mask
    try:
        result = fit(task, optimizer, scheduler, batches, steps=steps, stage="s1", checkpoint_dir=work_dir,
                     callbacks=callbacks, checkpoint_every=1, seed=0, exclude_prefixes=("teacher.",),
                     raise_on_stop=False)  # fmt: skip
    finally:
        stage1_module.make_patch_mask = make_mask
    return {
        "losses": callbacks.values("loss"),
        "steps_done": result.steps_done,
        "events": callbacks.events,
        "weights": {k: v.detach().clone() for k, v in student.state_dict().items()},
        "masks": distributed.gather(masks),
        "ids": distributed.gather(images.fetched),
    }


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    torch.set_num_threads(1)
    distributed.setup(device_kind="cpu", local_rank=0)
    try:
        for scenario in argv[1:]:
            name, steps, stop_at, mask_probability = scenario.split(":")
            found = run(out / name, steps=int(steps), stop_at=int(stop_at), mask_probability=float(mask_probability))
            if distributed.is_main():
                torch.save(found, out / f"{name}.pt")
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main(sys.argv[1:])
    distributed.exit_rank(0)

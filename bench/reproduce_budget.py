"""Compute matching of the comparison's arms (issue 17) and a run-time estimate for a preset.

The rule (:data:`MATCHING_RULE`, also printed in every report): a stage-1 budget ``B`` is steps
per stage-1 step, and every arm is matched in images through the optimised model.

Images are not FLOPs: a stage-1 step also runs the teacher forward and (GKD) a masked student view,
and a frozen-encoder stage-2 step backpropagates through the head only. :func:`estimate_seconds`
counts FLOPs for the time estimate (per device, :data:`SPEEDS`); the reports give measured seconds per
arm beside the images.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from bench.reproduce_config import Arm, SizePreset
from gkd_core.methods import get_method

MATCHING_RULE = """A stage-1 budget `B` is steps per stage-1 step: full GKD runs `B` steps of 1a (proxy) and `B` of
1b (source), then `stage2_steps` with a frozen encoder. Every arm is matched in *images through the
optimised model*: `images = (proxy_steps + stage1_steps) x stage1_batch + stage2_steps x stage2_batch`.

- Two-stage arms share the `2 B` stage-1 steps among the steps they have: GKD, two-stage MSE and GKD
  without L_mask run `B` + `B`; Proteus (proxy step only) and GKD without 1a run all `2 B` in their
  one step. Stage 2 is `stage2_steps` for all of them.
- Single-stage arms that train the encoder (KD, CWD, feature MSE, fine-tuned no-KD) get
  `ceil(images / stage2_batch)` stage-2 steps: as many images as full GKD in total.
- The frozen no-KD row (and the teacher row riding on its run) keeps the plain `stage2_steps`: it is
  a two-stage arm minus its stage 1 (a random encoder, the same head training), the zero point of
  the fraction of the teacher's lead carried; it does not depend on `B` and runs once per seed."""

GENERATE_S_PER_MEGAPIXEL = 3.3
"""Synthetic benchmark generation, one process: 530 images at 128 px took 28 s on the loaded build machine."""


@dataclass(frozen=True)
class Speed:
    """What the time estimate assumes of a device: sustained TFLOP/s and a per-step floor, and why."""

    tflops: float
    floor_ms: float  # kernel launches, optimiser, data loading, Python: a small model's step never goes below
    basis: str


SPEEDS: dict[str, Speed] = {
    # H100/H200 dense bf16 peak is ~990 TFLOP/s; small ViTs reach a fraction, so assume 100.
    "cuda": Speed(100.0, 15.0, "assumed for one H100/H200 under bf16 autocast; not yet timed"),
    # Fitted to the budget sweep of 2026-12-01 (docs/RESULTS.md; one thread per process, two processes on
    # the 2-core build machine, load near 2): 0.077 s per default-size stage-1 step (5.5 GFLOP) and
    # 0.1-0.15 s per fine-tuning stage-2 step, whose FPN head the ViT FLOP count leaves out (hence the
    # floor). The earlier fit (0.015 TFLOP/s, 200 ms; load 7-10) predicted 196 min for a sweep that took
    # about 97 process-minutes.
    "cpu": Speed(0.07, 125.0, "fitted to the budget sweep in docs/RESULTS.md (one thread per process)"),
}


@dataclass(frozen=True)
class ArmBudget:
    """The steps one arm runs at one stage-1 budget, and the images its optimiser sees."""

    proxy_steps: int
    stage1_steps: int
    stage2_steps: int
    images: int
    rule: str
    depends_on_budget: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def matched_images(preset: SizePreset, budget: int) -> int:
    """Images full GKD sees at stage-1 budget ``budget``: the total every trained arm is matched to."""
    return 2 * budget * preset.stage1_batch + preset.stage2_steps * preset.stage2_batch


def _stage1_steps_of(arm: Arm) -> tuple[bool, bool]:
    """(runs step 1a, runs step 1b) for a two-stage arm, from its method's traits and its proxy flag."""
    traits = get_method(arm.method).traits
    return arm.proxy and traits.proxy != "unused", traits.proxy != "only"


def arm_budget(arm: Arm, preset: SizePreset, budget: int) -> ArmBudget:
    """The compute-matched steps of ``arm`` at stage-1 budget ``budget`` (see the module docstring)."""
    if budget < 1:
        raise ValueError(f"a stage-1 budget is at least 1 step, got {budget}")
    traits = get_method(arm.method).traits
    s2, b1, b2 = preset.stage2_steps, preset.stage1_batch, preset.stage2_batch
    if traits.two_stage:
        has_1a, has_1b = _stage1_steps_of(arm)
        per_step = 2 * budget // (int(has_1a) + int(has_1b))
        proxy, source = per_step if has_1a else 0, per_step if has_1b else 0
        rule = "two-stage: 1a + 1b = 2 x budget" if has_1a and has_1b else "two-stage, one stage-1 step: 2 x budget"
        return ArmBudget(proxy, source, s2, (proxy + source) * b1 + s2 * b2, rule, True)
    if arm.finetune or traits.encoder == "trainable":
        steps = math.ceil(matched_images(preset, budget) / b2)
        return ArmBudget(0, 0, steps, steps * b2, "single-stage: stage 2 matched to full GKD's images", True)
    return ArmBudget(0, 0, s2, s2 * b2, "frozen reference: plain stage 2 (budget-independent)", False)


def vit_forward_gflops(arch: dict[str, Any], image_size: int) -> float:
    """Forward GFLOPs of one image through a ViT: 24 N D^2 (qkv, proj, 4x MLP) + 4 N^2 D (attention) per block."""
    tokens = (image_size // int(arch["patch_size"])) ** 2 + 1
    dim, depth = int(arch["embed_dim"]), int(arch["depth"])
    return depth * (24 * tokens * dim**2 + 4 * tokens**2 * dim) / 1e9


def _step_gflops(preset: SizePreset) -> dict[str, float]:
    """GFLOPs of one step of each kind (backward = 2x forward; heads are small and left out)."""
    t = vit_forward_gflops(preset.teacher_arch, preset.image_size)
    s = vit_forward_gflops(preset.student_arch, preset.image_size)
    b1, b2 = preset.stage1_batch, preset.stage2_batch
    return {
        "teacher_pretrain": 3 * t * preset.teacher_batch,
        # teacher forward + a clean and a masked student view, each forward + backward
        "stage1": (t + 2 * 3 * s) * b1,
        "stage2_frozen": s * b2,
        "stage2_finetune": 3 * s * b2,
        "stage2_with_teacher": (3 * s + t) * b2,  # KD, CWD, feature MSE run the teacher too
    }


def _step_seconds(gflops: float, tflops: float, floor_ms: float) -> float:
    return max(gflops / (tflops * 1e3), floor_ms / 1e3)


def estimate_seconds(
    preset: SizePreset,
    arms: list[Arm],
    budgets: list[int],
    seeds: int,
    *,
    device: str = "cuda",
) -> dict[str, Any]:
    """Time estimate of a whole run on ``device``: steps x max(FLOPs / TFLOP/s, floor), plus evaluation.

    Returns the seconds, the step counts by kind, and a sentence saying the basis (for the report).
    """
    speed = SPEEDS[device]
    tflops, floor_ms = speed.tflops, speed.floor_ms
    flops = _step_gflops(preset)
    steps: dict[str, int] = dict.fromkeys(flops, 0)
    steps["teacher_pretrain"] = preset.teacher_steps
    evals = 0  # (model, domain) evaluations of one val split each
    runs_done: set[tuple[str, int | None]] = set()
    for budget in budgets:
        for arm in arms:
            b = arm_budget(arm, preset, budget)
            key = (arm.run_key, budget if b.depends_on_budget else None)
            if key in runs_done:
                continue
            runs_done.add(key)
            traits = get_method(arm.method).traits
            steps["stage1"] += (b.proxy_steps + b.stage1_steps) * seeds
            if traits.two_stage or not (arm.finetune or traits.encoder == "trainable"):
                kind = "stage2_frozen"
            else:
                kind = "stage2_with_teacher" if traits.teacher != "unused" else "stage2_finetune"
            steps[kind] += b.stage2_steps * seeds
            if arm.run_key == "none_frozen":
                steps["stage2_frozen"] += b.stage2_steps * seeds  # the teacher reference's head
            evals += 2 * seeds
    domains = 6
    eval_images = evals * domains * preset.bench.target_val
    eval_s = eval_images * vit_forward_gflops(preset.teacher_arch, preset.image_size) / (tflops * 1e3)
    sizes = preset.bench
    images = sizes.source_train + sizes.source_val + 5 * (sizes.target_train + sizes.target_val)
    images += sizes.pool_train + sizes.pool_val
    generate_s = images * preset.image_size**2 / 1e6 * GENERATE_S_PER_MEGAPIXEL
    seconds = sum(n * _step_seconds(flops[k], tflops, floor_ms) for k, n in steps.items()) + eval_s + generate_s
    basis = (
        f"{device}: steps x max(FLOPs per step / {tflops:g} TFLOP/s, {floor_ms:g} ms per step) + evaluation "
        f"({eval_images:,} val images at teacher cost) + generating {images:,} benchmark images ({generate_s:.0f} s at "
        f"{GENERATE_S_PER_MEGAPIXEL:g} s per megapixel, measured on the build machine; skipped when reused); FLOPs "
        f"per image: ViT forward = depth x (24 N D^2 + 4 N^2 D), backward = 2x forward; start-up not included; "
        f"speeds {speed.basis}"
    )
    return {"seconds": seconds, "steps": steps, "gflops_per_step": flops, "generate_s": generate_s, "basis": basis}

"""Run the arms of the paper comparison directly with ``gkd_core.run_experiment``.

Fairness: every arm gets the same pretrained teacher file, the same student initialisation per seed
(one safetensors file written once per seed and loaded by every arm), the same stage-2 head, crop,
batches and learning rates, and the same total images at each stage-1 budget (the compute matching
of bench/reproduce_budget.py). KD and CWD need the teacher's own segmentation head; it is the
``ref_teacher`` stage of the frozen no-KD run of the same seed, copied into their work dirs so it is
trained once per seed (run_experiment resumes finished stages from ``state.json``).

Layout under ``OUT/runs``: ``seed<S>/<run>`` for the budget-independent frozen no-KD run (with the
teacher reference), ``stage1-<B>/seed<S>/<run>`` for every other run at stage-1 budget ``B``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

import gkd_core  # noqa: F401  (torchvision shim before timm)

# isort: split
from bench.reproduce_budget import ArmBudget, arm_budget
from bench.reproduce_config import STUDENT_MODEL, TEACHER_MODEL, Arm, SizePreset
from gkd_core.config import BackboneConfig, Stage1Config
from gkd_core.data.synthetic import generate_benchmark, load_benchmark
from gkd_core.engine.callbacks import Callbacks
from gkd_core.experiment import DatasetSplit, ExperimentConfig, Stage2Config, run_experiment
from gkd_core.export import load_student
from gkd_core.methods import get_method
from gkd_core.models.backbone import build_backbone

_logger = logging.getLogger(__name__)

NO_KD_RUN = "none_frozen"
"""The frozen no-KD run: the no-KD row, the teacher reference and the teacher head KD and CWD reuse."""


class _EventLog(Callbacks):
    """Forward run_experiment's events to the log (phases and per-domain mIoU)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._logged: dict[str, int] = {}

    def on_event(self, message: str) -> None:
        _logger.info("[%s] %s", self.prefix, message)

    def on_progress(self, stage: str, fraction: float, eta_s: float | None) -> None:
        # One line per 20 % of each stage, with the trainer's ETA: enough to plan run sizes from the log.
        tenth = int(fraction * 5)
        if 0 < tenth > self._logged.get(stage, 0):
            self._logged[stage] = tenth
            eta = "" if eta_s is None else f", eta {eta_s:.0f} s"
            _logger.info("[%s] %s: %.0f %%%s", self.prefix, stage, fraction * 100, eta)


@dataclass
class Bench:
    """Where the benchmark lives and which domains play which role."""

    root: Path
    source: str
    targets: list[str]
    pool: str

    def ref(self, domain: str, split: str, name: str | None = None) -> DatasetSplit:
        return DatasetSplit(root=self.root / domain, layout="folder", split=split, name=name or domain)

    def eval_refs(self) -> list[DatasetSplit]:
        """Every target's val split and the source's val split (labelled by domain name)."""
        return [self.ref(d, "val") for d in self.targets] + [self.ref(self.source, "val")]


def prepare_benchmark(root: Path, preset: SizePreset, seed: int = 0, source: str | None = None) -> Bench:
    """Generate the benchmark unless ``root`` already holds one with the same seed, size and counts.

    ``source`` swaps the source domain for one of the targets (a diagnostic: a source whose style
    is a weaker cue than toon's flat palette); every target then gets a train split of the
    source's size and toon becomes a target.
    """
    sizes = preset.bench
    if source is not None and source != "toon":
        sizes = replace(sizes, target_train=sizes.source_train)
    stamp = root / "reproduce_stamp.json"
    want = {"seed": seed, "size": preset.image_size, "sizes": asdict(sizes)}
    if not (stamp.is_file() and json.loads(stamp.read_text()) == want):
        _logger.info("generating the synthetic benchmark in %s (%s)", root, want)
        generate_benchmark(root, seed=seed, size=preset.image_size, sizes=sizes)
        stamp.write_text(json.dumps(want))
    info = load_benchmark(root)
    bench = Bench(root=root, source=info["source"], targets=list(info["targets"]), pool=info["pool"])
    if source is None or source == bench.source:
        return bench
    if source not in bench.targets:
        raise ValueError(f"--source must be one of {[bench.source, *bench.targets]}, got {source!r}")
    targets = [bench.source, *(t for t in bench.targets if t != source)]
    return Bench(root=root, source=source, targets=targets, pool=bench.pool)


def teacher_config(preset: SizePreset, weights: str = "none") -> BackboneConfig:
    return BackboneConfig(
        model=TEACHER_MODEL, weights=weights, img_size=preset.image_size, overrides=dict(preset.teacher_arch)
    )


def student_config(preset: SizePreset, weights: str = "none") -> BackboneConfig:
    return BackboneConfig(
        model=STUDENT_MODEL, weights=weights, img_size=preset.image_size, overrides=dict(preset.student_arch)
    )


def stage2_config(preset: SizePreset, *, steps: int, batch: int, lr: float) -> Stage2Config:
    return Stage2Config(
        steps=steps,
        batch_size=batch,
        lr=lr,
        crop_size=preset.image_size,
        head=preset.head,
        head_channels=preset.head_channels,
        checkpoint_every=max(steps, 1),
        num_workers=preset.num_workers,
    )


def save_backbone(backbone: torch.nn.Module, path: Path) -> Path:
    """Write a Backbone's timm weights (plain timm keys) so ``BackboneConfig(weights=path)`` loads them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in backbone.model.state_dict().items()}  # type: ignore[union-attr]
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)
    return path


def check_loads(cfg: BackboneConfig, reference: torch.nn.Module) -> None:
    """Build ``cfg`` (weights from a file) and check every tensor equals ``reference``'s: the load path works."""
    loaded = build_backbone(cfg).model.state_dict()
    expected = reference.model.state_dict()  # type: ignore[union-attr]
    bad = [k for k, v in expected.items() if not torch.equal(loaded[k], v)]
    if bad:
        raise RuntimeError(
            f"{cfg.weights} does not reload into build_backbone: {len(bad)} tensors differ, e.g. {bad[:3]}"
        )


def pretrain_teacher(
    out: Path, bench: Bench, preset: SizePreset, device: str = "cpu"
) -> tuple[Path, dict[str, float], float]:
    """Fine-tune the teacher architecture on the pool (method none) and save its backbone.

    Returns the weights file, the pretrained model's mIoU per domain (pool val, targets, source)
    and the seconds it took (0 when reused).
    """
    work = out / "teacher_pretrain"
    weights = out / "teacher" / "teacher_backbone.safetensors"
    results_file = work / "pretrain_results.json"
    if weights.is_file() and results_file.is_file():
        data = json.loads(results_file.read_text())
        return weights, data["miou"], 0.0
    start = time.perf_counter()
    arch = teacher_config(preset)
    cfg = ExperimentConfig(
        teacher=arch,
        student=arch,
        source=bench.ref(bench.pool, "train", name=f"{bench.pool}/train"),
        targets=[bench.ref(bench.pool, "val"), *bench.eval_refs()],
        method="none",
        finetune=True,
        stage2=stage2_config(preset, steps=preset.teacher_steps, batch=preset.teacher_batch, lr=preset.teacher_lr),
        seed=0,
        device=device,
        precision=preset.precision,
        name="foundation-teacher",
        export_onnx=False,
        evaluate_source=False,
    )
    result = run_experiment(cfg, work_dir=work, callbacks=_EventLog("teacher-pretrain"))
    model, _meta = load_student(result.exports["student"])
    save_backbone(model.backbone, weights)
    check_loads(teacher_config(preset, str(weights)), model.backbone)
    miou = {d: m.miou for d, m in result.student.items()}
    seconds = time.perf_counter() - start
    results_file.write_text(json.dumps({"miou": miou, "seconds": seconds}, indent=2))
    return weights, miou, seconds


def student_init(out: Path, preset: SizePreset, seed: int) -> Path:
    """One random student initialisation per seed, shared by every arm of that seed."""
    path = out / "init" / f"student_seed{seed}.safetensors"
    if not path.is_file():
        torch.manual_seed(1000 + seed)
        backbone = build_backbone(student_config(preset))
        save_backbone(backbone, path)
        check_loads(student_config(preset, str(path)), backbone)
    return path


@dataclass
class RunOutcome:
    """Per-domain mIoU of the student and of each reference of one run_experiment call.

    ``cka`` is the run's report ``cka_to_teacher`` (model -> domain -> linear CKA of its final patch
    tokens to the frozen teacher's); empty when the run never used the teacher.
    """

    miou: dict[str, dict[str, float]]
    seconds: float
    cka: dict[str, dict[str, float]] = field(default_factory=dict)
    reused: bool = False
    info: dict[str, Any] = field(default_factory=dict)


def arm_config(
    arm: Arm,
    *,
    bench: Bench,
    preset: SizePreset,
    budget: ArmBudget,
    teacher_weights: Path,
    student_weights: Path,
    seed: int,
    with_teacher_ref: bool,
    device: str = "cpu",
) -> ExperimentConfig:
    """The ExperimentConfig of one arm at its compute-matched ``budget`` (same teacher, init and head)."""
    s1 = Stage1Config(
        # Proteus has no 1b: its 1a config is derived from this one, so it carries 1a's steps.
        steps=budget.stage1_steps or max(budget.proxy_steps, 1),
        batch_size=preset.stage1_batch,
        lr=preset.stage1_lr,
        image_size=preset.image_size,
        loss_weights={"cls": 1.0, "feat": 1.0, "mask": arm.mask_weight},
        teacher_precision="bf16" if preset.precision == "bf16" else "fp32",
        checkpoint_every=max(budget.stage1_steps, budget.proxy_steps, 1),
    )
    return ExperimentConfig(
        teacher=teacher_config(preset, str(teacher_weights)),
        student=student_config(preset, str(student_weights)),
        source=bench.ref(bench.source, "train", name=f"{bench.source}/train"),
        targets=bench.eval_refs(),
        method=arm.method,
        proxy=bench.ref(bench.pool, "train", name=f"{bench.pool}/train") if arm.proxy else None,
        stage1=s1,
        proxy_stage1=replace(s1, steps=max(budget.proxy_steps, 1)),
        stage2=stage2_config(preset, steps=budget.stage2_steps, batch=preset.stage2_batch, lr=preset.stage2_lr),
        references=["teacher"] if with_teacher_ref else [],
        seed=seed,
        device=device,
        precision=preset.precision,
        similarity_images=preset.similarity_images,
        finetune=arm.finetune,
        name=f"{arm.run_key}-seed{seed}",
        export_onnx=False,
        evaluate_source=False,
    )


def seed_teacher_head(work: Path, donor: Path) -> bool:
    """Copy a finished ``ref_teacher`` stage (teacher + head on the source) into ``work``'s state."""
    donor_state = donor / "state.json"
    if not donor_state.is_file():
        return False
    info = json.loads(donor_state.read_text())["finished"].get("ref_teacher")
    if not info:
        return False
    state_file = work / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {"finished": {}}
    if "ref_teacher" in state["finished"]:
        return True
    (work / "checkpoints").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(donor / info["file"], work / info["file"])
    state["finished"]["ref_teacher"] = info
    state_file.write_text(json.dumps(state, indent=2, sort_keys=True))
    return True


def run_arm(work: Path, cfg: ExperimentConfig, *, teacher_donor: Path | None = None) -> RunOutcome:
    """Run (or reuse) one run_experiment call and collect mIoU per model and domain."""
    done_file = work / "reproduce_result.json"
    if done_file.is_file():
        data = json.loads(done_file.read_text())
        return RunOutcome(
            miou=data["miou"], seconds=data["seconds"], cka=data.get("cka", {}), reused=True, info=data.get("info", {})
        )
    work.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {}
    if teacher_donor is not None and get_method(cfg.method).traits.teacher == "logits":
        info["teacher_head_from"] = str(teacher_donor) if seed_teacher_head(work, teacher_donor) else None
    start = time.perf_counter()
    result = run_experiment(cfg, work_dir=work, callbacks=_EventLog(cfg.name))
    seconds = time.perf_counter() - start
    miou = {"student": {d: m.miou for d, m in result.student.items()}}
    miou.update({r: {d: m.miou for d, m in per.items()} for r, per in result.references.items()})
    cka = {name: dict(per) for name, per in result.report.get("cka_to_teacher", {}).items()}
    done_file.write_text(json.dumps({"miou": miou, "seconds": seconds, "cka": cka, "info": info}, indent=2))
    return RunOutcome(miou=miou, seconds=seconds, cka=cka, info=info)


def run_dir(out: Path, budget: ArmBudget, stage1_budget: int, seed: int, run_key: str) -> Path:
    """Where one run lives: budget-independent runs once per seed, the others once per budget and seed."""
    if budget.depends_on_budget:
        return out / "runs" / f"stage1-{stage1_budget}" / f"seed{seed}" / run_key
    return out / "runs" / f"seed{seed}" / run_key


def run_comparison(
    out: Path,
    bench: Bench,
    preset: SizePreset,
    arms: list[Arm],
    seeds: list[int],
    budgets: list[int],
    *,
    train: bool = True,
    device: str = "cpu",
) -> dict[str, Any]:
    """Pretrain the teacher, then every selected arm for every seed and stage-1 budget; the raw results.

    Per seed the budget-independent runs go first (the frozen no-KD run trains the teacher head that KD
    and CWD reuse), then each budget in the order given. With ``train=False`` nothing is trained: only
    runs that already finished are collected (a report of a run still in progress, or cut short).
    Returns ``teacher_pretrain`` and ``budgets``: budget -> {"arm_budgets", "arms"}, where each arm has
    per-seed ``seeds`` (domain -> mIoU), ``cka`` (domain -> CKA to the teacher) and ``seconds``.
    """
    if train:
        teacher_weights, teacher_pre, teacher_s = pretrain_teacher(out, bench, preset, device)
    else:
        teacher_weights = out / "teacher" / "teacher_backbone.safetensors"
        pre_file = out / "teacher_pretrain" / "pretrain_results.json"
        pre = json.loads(pre_file.read_text()) if pre_file.is_file() else {"miou": {}, "seconds": None}
        teacher_pre, teacher_s = pre["miou"], pre["seconds"]
    _logger.info("teacher pretrained on %s: %s", bench.pool, {k: round(v, 3) for k, v in teacher_pre.items()})
    runs: dict[str, Arm] = {}
    for arm in arms:
        runs.setdefault(arm.run_key, arm if arm.result == "student" else replace(arm, result="student"))
    wants_teacher = any(a.result == "teacher" for a in arms)
    plans = {b: {a.name: arm_budget(a, preset, b) for a in arms} for b in budgets}
    per_budget: dict[str, dict[str, Any]] = {
        str(b): {
            "arm_budgets": {name: ab.to_dict() for name, ab in plans[b].items()},
            "arms": {a.name: {"seeds": {}, "cka": {}, "seconds": {}} for a in arms},
        }
        for b in budgets
    }
    # Budget-independent runs first, then every budget: (stage-1 budget, run key, its arm budget).
    order = sorted(
        ((b, key, arm_budget(arm, preset, b)) for b in budgets for key, arm in runs.items()),
        key=lambda item: (item[2].depends_on_budget, budgets.index(item[0])),
    )
    for seed in seeds:
        init = student_init(out, preset, seed) if train else Path()
        donor = out / "runs" / f"seed{seed}" / NO_KD_RUN  # where run_dir puts the budget-independent run
        outcomes: dict[Path, RunOutcome] = {}
        for stage1_budget, key, budget in order:
            work = run_dir(out, budget, stage1_budget, seed, key)
            if work not in outcomes:
                if not train and not (work / "reproduce_result.json").is_file():
                    continue
                cfg = arm_config(
                    runs[key],
                    bench=bench,
                    preset=preset,
                    budget=budget,
                    teacher_weights=teacher_weights,
                    student_weights=init,
                    seed=seed,
                    with_teacher_ref=wants_teacher and key == NO_KD_RUN,
                    device=device,
                )
                outcomes[work] = run_arm(work, cfg, teacher_donor=donor)
                outcome = outcomes[work]
                _logger.info(
                    "seed %d %s: %.0f s%s", seed, work.relative_to(out), outcome.seconds, " (reused)" * outcome.reused
                )
            outcome = outcomes[work]
            for a in arms:
                if a.run_key == key:
                    row = per_budget[str(stage1_budget)]["arms"][a.name]
                    row["seeds"][str(seed)] = outcome.miou[a.result]
                    row["seconds"][str(seed)] = outcome.seconds
                    # The teacher row has no CKA to itself; every other row is its run's student.
                    row["cka"][str(seed)] = outcome.cka.get("student", {}) if a.result == "student" else {}
    return {
        "teacher_pretrain": {"weights": str(teacher_weights), "miou": teacher_pre, "seconds": teacher_s},
        "budgets": per_budget,
    }

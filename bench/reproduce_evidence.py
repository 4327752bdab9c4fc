"""Issue 17's numbers computed from the runs: the teacher's lead carried, CKA, its link to mIoU, ablation verdicts.

Everything here reads the raw per-seed results of bench/reproduce_run.run_comparison (one stage-1
budget at a time: arm -> {"seeds": seed -> domain -> mIoU, "cka": seed -> domain -> CKA}); nothing
trains. CKA is the value each run's robustness report computed (gkd_core/experiment/similarity.py).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from bench.reproduce_config import ARMS
from gkd_core.methods import get_method
from gkd_core.robustness import MIN_LEAD_POINTS, lead_fraction

TEACHER, NO_KD = "teacher", "none_frozen"
TWO_STAGE_ARMS = tuple(a.name for a in ARMS if get_method(a.method).traits.two_stage)
SE_MULTIPLE = 2.0
"""A difference of means counts when it exceeds this many standard errors (pooled seed spread)."""


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample std (0 for one value, NaN for none) with the count."""
    if not values:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "n": len(values),
    }


def target_average(per_domain: dict[str, float], targets: list[str]) -> float:
    return statistics.fmean(per_domain[d] for d in targets)


def lead_carried(arms: dict[str, dict[str, Any]], targets: list[str]) -> dict[str, dict[str, Any]]:
    """Per arm: the fraction of the teacher's lead over frozen no-KD it carries on the target average.

    Computed per seed against that seed's teacher and no-KD rows ((arm - no-KD) / (teacher - no-KD),
    gkd_core.robustness.lead_fraction), then mean ± std over the seeds where the lead is at least
    ``MIN_LEAD_POINTS``; ``{}`` when either reference row is missing.
    """
    if TEACHER not in arms or NO_KD not in arms:
        return {}
    teacher, no_kd = arms[TEACHER]["seeds"], arms[NO_KD]["seeds"]
    out: dict[str, dict[str, Any]] = {}
    for name, data in arms.items():
        if name in (TEACHER, NO_KD):
            continue
        fractions = [
            lead_fraction(
                target_average(per, targets), target_average(teacher[s], targets), target_average(no_kd[s], targets)
            )
            for s, per in data["seeds"].items()
            if s in teacher and s in no_kd
        ]
        kept = [f for f in fractions if f is not None]
        out[name] = {**mean_std(kept), "seeds_without_lead": len(fractions) - len(kept)}
    return out


def cka_summary(arms: dict[str, dict[str, Any]], domains: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """Per arm with CKA values: domain -> mean ± std over seeds of the CKA of its student to the teacher."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name, data in arms.items():
        per_seed = [c for c in data.get("cka", {}).values() if c]
        if per_seed:
            out[name] = {d: mean_std([c[d] for c in per_seed if d in c]) for d in domains}
    return out


@dataclass(frozen=True)
class CkaPoint:
    """One (arm, budget, seed, unseen domain): its student's CKA to the teacher and its mIoU there."""

    arm: str
    budget: int
    seed: str
    domain: str
    cka: float
    miou: float


def cka_points(
    per_budget: dict[int, dict[str, Any]], targets: list[str], arms: tuple[str, ...] = TWO_STAGE_ARMS
) -> list[CkaPoint]:
    """Every two-stage arm's (CKA, mIoU) pair on every target domain, budget and seed that has both."""
    points: list[CkaPoint] = []
    for budget, data in per_budget.items():
        for name in arms:
            row = data.get(name)
            if row is None:
                continue
            for seed, cka in row.get("cka", {}).items():
                miou = row["seeds"].get(seed, {})
                points += [CkaPoint(name, budget, seed, d, cka[d], miou[d]) for d in targets if d in cka and d in miou]
    return points


def pearson(points: list[CkaPoint]) -> float | None:
    """Pearson's r between CKA and mIoU over the points; None with fewer than 3 or no spread."""
    if len(points) < 3:
        return None
    xs, ys = [p.cka for p in points], [p.miou for p in points]
    if statistics.pstdev(xs) == 0 or statistics.pstdev(ys) == 0:
        return None
    return statistics.correlation(xs, ys)


def pearson_by_domain(points: list[CkaPoint]) -> dict[str, float | None]:
    """Pearson's r within each target domain: whether CKA ranks arms and budgets there, apart from domain effects."""
    return {d: pearson([p for p in points if p.domain == d]) for d in dict.fromkeys(p.domain for p in points)}


@dataclass(frozen=True)
class Ablation:
    """A comparison the paper reports: ``better`` beats ``worse`` on the target average (paper's direction)."""

    name: str
    better: str
    worse: str
    paper: str
    caveat: str = ""


ABLATIONS: tuple[Ablation, ...] = (
    Ablation(
        "decoupling",
        "two_stage_mse",
        "feature_mse",
        "decoupled distillation then a frozen encoder beats joint task + distillation training (+5 to +7)",
        "the paper fine-tunes GKD's own stage 2 instead of freezing it; no arm does that (gkd's encoder is "
        "frozen), so the nearest pair is read: the same MSE feature target decoupled (two-stage MSE) or joint "
        "(feature MSE)",
    ),
    Ablation("QSD vs plain heads", "gkd", "two_stage_mse", "QSD heads beat LayerNorm + Linear heads (about +1)"),
    Ablation("step 1a", "gkd", "gkd_no_proxy", "the proxy step 1a before 1b helps"),
    Ablation("L_mask", "gkd", "gkd_no_mask", "the masked term L_mask helps (about +0.6)"),
)

REPRODUCED, NOT_REPRODUCED, NOT_SEPARABLE = "reproduced", "not reproduced", "not separable at this scale"
VERDICT_RULE = (
    f"difference of the two arms' mean target averages over seeds against its standard error from the pooled "
    f"seed spread, SE = s_pooled x sqrt(1/n_a + 1/n_b): **{REPRODUCED}** when the paper's direction holds by "
    f"more than {SE_MULTIPLE:g} SE, **{NOT_REPRODUCED}** when the opposite holds by more than {SE_MULTIPLE:g} SE, "
    f"else **{NOT_SEPARABLE}** (always so with one seed per arm: no spread to compare with)"
)


def verdict(better: list[float], worse: list[float]) -> dict[str, Any]:
    """The verdict of one ablation from per-seed target averages of the paper's better and worse arm."""
    na, nb = len(better), len(worse)
    if na < 1 or nb < 1:
        return {"diff": math.nan, "se": math.nan, "verdict": NOT_SEPARABLE, "n": (na, nb)}
    diff = statistics.fmean(better) - statistics.fmean(worse)
    if na + nb <= 2:
        return {"diff": diff, "se": math.nan, "verdict": NOT_SEPARABLE, "n": (na, nb)}
    mean_a, mean_b = statistics.fmean(better), statistics.fmean(worse)
    ss = sum((v - mean_a) ** 2 for v in better) + sum((v - mean_b) ** 2 for v in worse)
    se = math.sqrt(ss / (na + nb - 2)) * math.sqrt(1 / na + 1 / nb)
    if diff > SE_MULTIPLE * se:
        label = REPRODUCED
    elif -diff > SE_MULTIPLE * se:
        label = NOT_REPRODUCED
    else:
        label = NOT_SEPARABLE
    return {"diff": diff, "se": se, "verdict": label, "n": (na, nb)}


def ablation_verdicts(per_budget: dict[int, dict[str, Any]], targets: list[str]) -> list[dict[str, Any]]:
    """One verdict per ablation and budget where both arms ran (per-seed target averages)."""
    out: list[dict[str, Any]] = []
    for ablation in ABLATIONS:
        for budget, arms in per_budget.items():
            if ablation.better not in arms or ablation.worse not in arms:
                continue
            a = [target_average(p, targets) for p in arms[ablation.better]["seeds"].values()]
            b = [target_average(p, targets) for p in arms[ablation.worse]["seeds"].values()]
            out.append(
                {
                    "ablation": ablation.name,
                    "budget": budget,
                    "better": ablation.better,
                    "worse": ablation.worse,
                    **verdict(a, b),
                }
            )
    return out


__all__ = [
    "ABLATIONS",
    "MIN_LEAD_POINTS",
    "NOT_REPRODUCED",
    "NOT_SEPARABLE",
    "REPRODUCED",
    "TWO_STAGE_ARMS",
    "VERDICT_RULE",
    "Ablation",
    "CkaPoint",
    "ablation_verdicts",
    "cka_points",
    "cka_summary",
    "lead_carried",
    "mean_std",
    "pearson",
    "pearson_by_domain",
    "verdict",
]

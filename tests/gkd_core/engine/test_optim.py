"""AdamW schedules, parameter grouping and the linear lr scaling rule."""

from __future__ import annotations

import io
import itertools
import math

import pytest
import torch
from torch import nn

from gkd_core.engine import adamw_cosine, adamw_poly, param_groups, scaled_lr


class _Vit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, 4))
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, 4))
        self.proj = nn.Linear(4, 4)
        self.norm = nn.LayerNorm(4)
        self.frozen = nn.Linear(4, 4).requires_grad_(False)


def _lrs(optimizer: torch.optim.Optimizer, scheduler: object, steps: int) -> list[float]:
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()  # type: ignore[attr-defined]
        lrs.append(optimizer.param_groups[0]["lr"])
    return lrs


def test_scaled_lr_follows_the_paper_rule() -> None:
    assert scaled_lr(5e-4, 128) == pytest.approx(1.25e-4)
    assert scaled_lr(5e-4, 512) == pytest.approx(5e-4)
    with pytest.raises(ValueError, match="positive"):
        scaled_lr(5e-4, 0)


def test_no_decay_for_norms_biases_tokens_and_frozen_params_left_out() -> None:
    model = _Vit()
    groups = param_groups(model, 0.05)
    decayed = {id(p) for p in groups[0]["params"]}
    plain = {id(p) for p in groups[1]["params"]}
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model.proj.weight)}
    expected_plain = [model.cls_token, model.pos_embed, model.proj.bias, model.norm.weight, model.norm.bias]
    assert plain == {id(p) for p in expected_plain}
    assert id(model.frozen.weight) not in decayed | plain
    with pytest.raises(ValueError, match="no trainable"):
        param_groups(nn.Linear(2, 2).requires_grad_(False), 0.05)


def test_cosine_goes_from_lr_to_min_lr() -> None:
    optimizer, scheduler = adamw_cosine(_Vit(), lr=1e-3, steps=10, min_lr=1e-5)
    lrs = _lrs(optimizer, scheduler, 10)
    assert lrs[0] == pytest.approx(1e-3) and lrs[-1] == pytest.approx(1e-5)
    assert lrs[5] == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in itertools.pairwise(lrs))
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.param_groups[0]["weight_decay"] == 0.05


def test_cosine_warmup_ramps_up() -> None:
    optimizer, scheduler = adamw_cosine(nn.Linear(2, 2), lr=1.0, steps=10, warmup=4, min_lr=0.0)
    lrs = _lrs(optimizer, scheduler, 10)
    assert lrs[:5] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert lrs[-1] == pytest.approx(0.0)


def test_poly_decay_power() -> None:
    optimizer, scheduler = adamw_poly(nn.Linear(2, 2), lr=1e-4, weight_decay=0.05, steps=8, power=0.9)
    lrs = _lrs(optimizer, scheduler, 8)
    assert lrs[4] == pytest.approx(1e-4 * 0.5**0.9)
    assert lrs[-1] == pytest.approx(0.0)


def test_schedule_state_survives_weights_only_load() -> None:
    optimizer, scheduler = adamw_cosine(nn.Linear(2, 2), lr=1e-3, steps=10)
    _lrs(optimizer, scheduler, 3)
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    _, sched2 = adamw_cosine(nn.Linear(2, 2), lr=1e-3, steps=10)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == scheduler.get_last_lr()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"lr": 0.0}, "lr must be > 0"), ({"steps": 0}, "steps must be >= 1"), ({"warmup": 10}, "warmup")],
)
def test_bad_schedule_arguments(kwargs: dict[str, float], message: str) -> None:
    options = {"lr": 1e-3, "steps": 10, **kwargs}
    with pytest.raises(ValueError, match=message):
        adamw_cosine(nn.Linear(2, 2), **options)  # type: ignore[arg-type]

"""Speed options: the measured defaults table, the gpu_check verdicts that fill it, and fit applying them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from gkd_core.config import Stage1Config
from gkd_core.engine import RecordingCallbacks, adamw_cosine, fit
from gkd_core.engine.speed import (
    SpeedOptions,
    adamw_fused,
    attention,
    decide,
    record_defaults,
    speed_defaults,
)
from gkd_core.errors import ConfigError
from gkd_core.models import build_backbone, build_teacher
from gkd_core.stages import run_stage1
from tests.gkd_core.models.tiny import tiny_resnet, tiny_teacher

from ._toy import make_run

TABLE = {
    "devices": {
        "cpu": {"options": {"fused_adamw": True, "attention": "math", "channels_last": False, "compile": False}},
        "cuda": {"options": {"compile": True, "compile_min_steps": 500}},
    }
}


def _decision(option: str, off: float, on: float, **extra: Any) -> dict[str, Any]:
    faster = "on" if on < off else "off"
    speedup = max(off, on) / max(min(off, on), 1e-9)
    return {
        "option": option,
        "median_ms": {"off": off, "on": on},
        "faster": faster,
        "clear": speedup >= 1.02,
        "line": f"{option}: off {off} ms, on {on} ms",
        **extra,
    }


# ------------------------------------------------------------------------------------------ the table


def test_defaults_are_the_table_row_of_the_device() -> None:
    assert speed_defaults("cpu", TABLE) == SpeedOptions(fused_adamw=True, attention="math")
    assert speed_defaults("meta", TABLE) == SpeedOptions()  # never measured: torch's defaults


def test_overrides_replace_the_table_and_unknown_ones_are_refused() -> None:
    overrides = {"fused_adamw": False, "attention": "eager", "compile": True, "compile_min_steps": 40}
    assert speed_defaults("cpu", TABLE, overrides) == SpeedOptions(
        attention="eager", compile=True, compile_min_steps=40
    )
    cases: list[tuple[dict[str, Any], str]] = [
        ({"turbo": True}, "unknown speed options"),
        ({"compile": "yes"}, "takes a bool"),
        ({"compile_min_steps": True}, "takes a int"),
        ({"attention": "fastest"}, "attention must be one of"),
        ({"compile_min_steps": -1}, "must be >= 0"),
    ]
    for bad, message in cases:
        with pytest.raises(ConfigError, match=message):
            speed_defaults("cpu", TABLE, bad)


def test_the_catalogue_parses_the_worker_setting_into_these_options() -> None:
    """GKD_SPEED is read by the torch-free settings (gkd_catalog) and applied here: the names must agree."""
    from dataclasses import fields

    from gkd_catalog.speed import ATTENTION_CHOICES as CATALOGUE_CHOICES
    from gkd_catalog.speed import SPEED_OPTIONS, parse_speed_overrides
    from gkd_core.engine.speed import ATTENTION_CHOICES

    assert CATALOGUE_CHOICES == ATTENTION_CHOICES
    assert {f.name: str(f.type) for f in fields(SpeedOptions)} == {
        name: kind if isinstance(kind, str) else "str" for name, kind in SPEED_OPTIONS.items()
    }
    parsed = parse_speed_overrides(" fused_adamw=on, attention=flash,compile=off,compile_min_steps=7 ,")
    expected = SpeedOptions(fused_adamw=True, attention="flash", compile_min_steps=7)
    assert SpeedOptions().with_overrides(parsed) == expected
    for bad, message in [
        ("turbo=on", "name=value"),
        ("compile", "name=value"),
        ("compile=maybe", "on/off"),
        ("attention=fastest", "must be one of"),
        ("compile_min_steps=-1", "whole number"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_speed_overrides(bad)


def test_the_committed_table_loads_and_every_row_is_valid() -> None:
    from gkd_core.engine.speed import SPEED_DEFAULTS_PATH

    table = json.loads(SPEED_DEFAULTS_PATH.read_text())
    for key, row in table["devices"].items():
        SpeedOptions(**row["options"])  # raises on an unknown field or value
        assert row["measured"]["why"], f"{key}: a filed row says which figures decided it"


# ------------------------------------------------------------------------------------------ verdicts


def test_clear_winners_become_defaults_and_ties_keep_the_previous_value() -> None:
    previous = SpeedOptions(fused_adamw=True, attention="flash")
    decisions = [
        _decision("fused AdamW", 100.0, 99.5),  # a tie: stays on
        {**_decision("SDPA backend", 0, 0), "faster": "efficient", "clear": True, "median_ms": {}},
        _decision("channels-last", 100.0, 80.0),
        _decision("channels-last", 100.0, 120.0),  # lost in stage 2: off
    ]
    options, reasons = decide(decisions, previous)
    assert options == SpeedOptions(fused_adamw=True, attention="efficient", channels_last=False)
    assert any(r.startswith("fused_adamw: no winner by 2% over True") for r in reasons)

    options, _ = decide([_decision("channels-last", 100.0, 80.0), _decision("channels-last", 50.0, 40.0)])
    assert options.channels_last
    eager, _ = decide([{**_decision("SDPA backend", 0, 0), "faster": "timm_eager", "clear": True, "median_ms": {}}])
    assert eager.attention == "eager"


def test_an_attention_variant_must_beat_the_current_one_not_only_the_slowest() -> None:
    medians = {"flash": 417.5, "math": 429.6, "default": 416.3, "timm_eager": 406.1}
    sdpa = {"option": "SDPA backend", "median_ms": medians, "faster": "timm_eager", "clear": True, "line": "sdpa"}
    kept, reasons = decide([sdpa])  # 2.5 % over torch's choice: enough
    assert kept.attention == "eager"
    close, reasons = decide([{**sdpa, "median_ms": {**medians, "default": 410.0}}])  # 1 %: a tie with the default
    assert close.attention == "default" and "no winner by 2%" in reasons[0]


def test_a_win_must_show_in_the_minima_too_and_compile_needs_a_wider_margin() -> None:
    noisy = {**_decision("fused AdamW", 100.0, 90.0), "min_ms": {"off": 88.0, "on": 87.5}}
    assert not decide([noisy])[0].fused_adamw  # the medians moved, the undisturbed calls did not
    steady = {**_decision("fused AdamW", 100.0, 90.0), "min_ms": {"off": 95.0, "on": 85.0}}
    assert decide([steady])[0].fused_adamw
    three_percent = _decision("torch.compile", 103.0, 100.0, first_call_s=10.0)
    assert not decide([three_percent])[0].compile


def test_compile_defaults_carry_the_steps_that_repay_the_first_call() -> None:
    # saves 20 ms a step; the first call took 20.08 s, 20 s more than a compiled step: 1000 steps to break even
    options, _ = decide([_decision("torch.compile", 100.0, 80.0, first_call_s=20.08, backend="inductor")])
    assert options.compile and options.compile_min_steps == 1000
    assert options.compiles(1000) and not options.compiles(999)
    slower, _ = decide([_decision("torch.compile", 80.0, 100.0, first_call_s=5.0)], SpeedOptions(compile=True))
    assert not slower.compile and slower.compile_min_steps == 0
    ignored, reasons = decide([_decision("torch.compile", 100.0, 50.0, first_call_s=1.0, backend="eager")])
    assert not ignored.compile and "ignored" in reasons[0]


def test_a_report_is_filed_under_its_device_and_smoke_reports_are_not(tmp_path: Path) -> None:
    path = tmp_path / "speed_defaults.json"
    path.write_text(json.dumps({"devices": {"cuda": {"options": {"fused_adamw": True}}}}))
    decisions = [_decision("channels-last", 10.0, 8.0), _decision("fused AdamW", 10.0, 10.1)]
    meta = {"device": "cuda:0", "device_name": "NVIDIA H200", "torch": "2.13.0", "finished": 1.0}
    assert record_defaults({"meta": {**meta, "smoke": True}, "options": decisions}, path) == []
    keys = record_defaults({"meta": meta, "options": decisions, "plan": {"precision": "bf16"}}, path)
    assert keys == ["NVIDIA H200", "cuda"]
    table = json.loads(path.read_text())
    assert table["devices"]["cuda"]["options"]["fused_adamw"] is True  # a tie kept the generic row's value
    assert table["devices"]["NVIDIA H200"]["options"]["fused_adamw"] is False
    assert table["devices"]["NVIDIA H200"]["options"]["channels_last"] is True
    assert table["devices"]["cuda"]["measured"]["precision"] == "bf16"
    assert any("channels_last" in why for why in table["devices"]["NVIDIA H200"]["measured"]["why"])
    # Another GPU falls back to the generic row: one H200's channels-last win is not filed there.
    assert table["devices"]["cuda"]["options"]["channels_last"] is False
    assert any("under 'NVIDIA H200'" in why for why in table["devices"]["cuda"]["measured"]["why"])
    timed = {"default": 10.0, "flash": 8.0}
    attention = {**_decision("SDPA backend", 10.0, 8.0), "faster": "flash", "median_ms": timed, "min_ms": timed}
    unfused = _decision("fused AdamW", 8.0, 10.0)  # off clearly faster: that does reach the generic row
    record_defaults({"meta": meta, "options": [attention, unfused]}, path)
    table = json.loads(path.read_text())
    assert table["devices"]["NVIDIA H200"]["options"]["attention"] == "flash"
    assert table["devices"]["cuda"]["options"]["attention"] == "default"
    assert table["devices"]["cuda"]["options"]["fused_adamw"] is False


# ------------------------------------------------------------------------------------------ applying


class ConvTask(torch.nn.Module):
    """A conv regressor whose CNN part asks for channels-last (as a CNN Backbone does); no in-forward noise,
    whose values would follow the memory layout (``randn_like``) and so differ between layouts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.conv.prefers_channels_last = True  # type: ignore[assignment]
        self.head = torch.nn.Linear(4, 1)
        self.compiling: list[bool] = []
        self.flash_enabled: list[bool] = []

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.compiling.append(torch.compiler.is_compiling())
        self.flash_enabled.append(torch.backends.cuda.flash_sdp_enabled())
        pred = self.head(self.conv(batch["image"]).relu().mean(dim=(2, 3))).squeeze(-1)
        return {"loss": (pred - batch["target"]).pow(2).mean()}


def _run(init_seed: int, steps: int) -> tuple[ConvTask, Any, Any, Any]:
    _, _, _, batches = make_run(init_seed, steps)
    torch.manual_seed(init_seed)
    task = ConvTask()
    optimizer, scheduler = adamw_cosine(task, lr=1e-2, steps=steps, fused=True)
    return task, optimizer, scheduler, batches


def _toy_fit(speed: SpeedOptions | None, steps: int = 6, **kw: Any) -> tuple[Any, RecordingCallbacks]:
    task, optimizer, scheduler, batches = _run(0, steps)
    callbacks = RecordingCallbacks()
    fit(task, optimizer, scheduler, batches, steps=steps, stage="toy", callbacks=callbacks, seed=5, speed=speed, **kw)
    return task, callbacks


def test_channels_last_trains_the_same_and_hands_back_contiguous_weights(tmp_path: Path) -> None:
    plain, plain_calls = _toy_fit(None, checkpoint_dir=None)
    cl, cl_calls = _toy_fit(SpeedOptions(channels_last=True), checkpoint_dir=tmp_path)
    assert len(cl_calls.values("loss", "toy")) == 6
    assert any("channels-last on" in e for e in cl_calls.events)
    assert cl_calls.values("loss", "toy") == pytest.approx(plain_calls.values("loss", "toy"), rel=1e-5)
    assert cl.conv.weight.is_contiguous()  # exports (safetensors) need plain layouts again
    assert torch.allclose(cl.conv.weight, plain.conv.weight, atol=1e-6)


def test_channels_last_resume_continues_with_the_same_losses(tmp_path: Path) -> None:
    speed = SpeedOptions(channels_last=True, fused_adamw=True)
    _, whole = _toy_fit(speed, steps=6, checkpoint_dir=tmp_path / "whole")

    losses: dict[int, float] = {}
    for init_seed, callbacks in [(0, RecordingCallbacks(stop_at_step=3)), (1, RecordingCallbacks())]:
        task, optimizer, scheduler, batches = _run(init_seed, 6)  # seed 1: the checkpoint must win
        fit(task, optimizer, scheduler, batches, steps=6, stage="toy", callbacks=callbacks, seed=5, speed=speed,
            checkpoint_dir=tmp_path / "split", raise_on_stop=False)  # fmt: skip
        losses.update(callbacks.values("loss", "toy"))
    assert losses == pytest.approx(whole.values("loss", "toy"), rel=1e-6)


def test_compile_waits_for_a_stage_long_enough_to_repay_it() -> None:
    task, calls = _toy_fit(SpeedOptions(compile=True, compile_min_steps=7), steps=6, checkpoint_dir=None)
    assert any("compile off" in e for e in calls.events) and not any(task.compiling)


def test_a_compiled_stage_trains_like_the_eager_one() -> None:
    """Inductor on the CPU, about 6 s for this toy."""
    torch._dynamo.reset()
    task, calls = _toy_fit(SpeedOptions(compile=True, compile_min_steps=6), steps=6, checkpoint_dir=None)
    assert any("compile on" in e for e in calls.events) and task.compiling[0]  # traced by dynamo
    _, eager = _toy_fit(None, steps=6, checkpoint_dir=None)
    assert calls.values("loss", "toy") == pytest.approx(eager.values("loss", "toy"), rel=1e-4)


def test_fit_runs_every_step_under_the_chosen_attention_kernel() -> None:
    assert torch.backends.cuda.flash_sdp_enabled()
    task, _ = _toy_fit(SpeedOptions(attention="math"), steps=3, checkpoint_dir=None)
    assert task.flash_enabled == [False, False, False]  # only MATH allowed while training
    assert torch.backends.cuda.flash_sdp_enabled()  # and torch's choice is back afterwards


def test_attention_eager_switches_timm_off_for_a_while_and_back() -> None:
    student = build_backbone(tiny_resnet(32))
    teacher = build_teacher(tiny_teacher(32), student)
    modules = [m for m in teacher.modules() if hasattr(m, "fused_attn")]
    assert modules and all(m.fused_attn for m in modules)
    with attention(teacher, "eager"):
        assert not any(m.fused_attn for m in modules)
    assert all(m.fused_attn for m in modules)


@pytest.mark.parametrize(("choice", "enabled"), [("math", "math"), ("flash", "flash"), ("efficient", "mem_efficient")])
def test_attention_pins_one_sdpa_backend_with_math_behind_it(choice: str, enabled: str) -> None:
    flags = ("flash", "mem_efficient", "math", "cudnn")
    before = {f: getattr(torch.backends.cuda, f"{f}_sdp_enabled")() for f in flags}
    with attention(torch.nn.Identity(), choice):
        now = {f: getattr(torch.backends.cuda, f"{f}_sdp_enabled")() for f in flags}
        assert now == {f: f in (enabled, "math") for f in flags}
    assert {f: getattr(torch.backends.cuda, f"{f}_sdp_enabled")() for f in flags} == before


def test_fused_adamw_is_asked_for_only_where_torch_has_the_kernel() -> None:
    assert adamw_fused(SpeedOptions(fused_adamw=True), "cpu") is True
    assert adamw_fused(SpeedOptions(fused_adamw=True), "meta") is None
    assert adamw_fused(SpeedOptions(), "cpu") is None


def test_stages_take_the_defaults_of_their_device() -> None:
    """A CNN student: the step runs with the CPU's measured defaults and hands back plain weights."""
    expected = speed_defaults("cpu")
    student = build_backbone(tiny_resnet(32))
    teacher = build_teacher(tiny_teacher(32), student)
    callbacks = RecordingCallbacks()
    cfg = Stage1Config(steps=2, batch_size=2, image_size=32, teacher_precision="fp32", checkpoint_every=0,
                       mask_probability=0.0)  # fmt: skip
    run_stage1(student, teacher, cfg, source=[{"image": torch.rand(2, 3, 32, 32)}], callbacks=callbacks)
    lines = [e for e in callbacks.events if "speed options" in e]
    if expected == SpeedOptions():
        assert not lines  # nothing to say: torch's defaults
    else:
        on = {True: "on", False: "off"}
        assert lines == [
            f"stage1b: speed options: attention {expected.attention}, fused AdamW {on[expected.fused_adamw]}, "
            f"channels-last {on[expected.channels_last]}, compile {on[expected.compiles(2)]}"
        ]
    assert all(p.is_contiguous() for p in student.parameters())


def test_an_explicit_choice_wins_over_the_defaults() -> None:
    student = build_backbone(tiny_resnet(32))
    teacher = build_teacher(tiny_teacher(32), student)
    callbacks = RecordingCallbacks()
    cfg = Stage1Config(steps=2, batch_size=2, image_size=32, teacher_precision="fp32", checkpoint_every=0,
                       mask_probability=0.0)  # fmt: skip
    speed = SpeedOptions(fused_adamw=True, channels_last=True, attention="math")
    run_stage1(student, teacher, cfg, source=[{"image": torch.rand(2, 3, 32, 32)}], callbacks=callbacks, speed=speed)
    line = next(e for e in callbacks.events if "speed options" in e)
    assert line.endswith("attention math, fused AdamW on, channels-last on, compile off")
    assert all(p.is_contiguous() for p in student.parameters())

"""Speed options of a training step, and their defaults per device as measured (speed_defaults.json).

Four switches change how fast a step runs but not what it computes (beyond rounding): fused AdamW,
the attention kernel (an SDPA backend, or timm's eager softmax), channels-last memory for CNN
students and ``torch.compile``. Which setting is faster depends on the device, so the defaults are
not guessed here: ``bench/gpu_check.py`` times each on and off (on CUDA; ``--device cpu`` for a CPU)
and files the faster setting, with the figures that decided it, in ``speed_defaults.json`` under
the device's name (and under its type what holds for any GPU: ``PORTABLE_ON_CUDA``). A device never
measured keeps torch's defaults (all off).

``torch.compile`` pays a one-time cost (tracing and code generation, tens of seconds), so its default
carries ``compile_min_steps``: the step count from which the per-step saving repays that cost; a
shorter stage runs eagerly. A worker's ``GKD_SPEED`` (for example ``"compile=off,attention=flash"``,
parsed by gkd_catalog/speed.py when the worker's settings load) overrides the defaults for its jobs
through ``ExperimentConfig.speed_overrides``; a name or value this module does not know is refused.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gkd_core.errors import ConfigError

SPEED_DEFAULTS_PATH = Path(__file__).with_name("speed_defaults.json")

# attention choices that pin a torch SDPA backend ("default": torch picks; "eager": timm's softmax path)
_SDPA_BACKENDS = ("flash", "efficient", "cudnn", "math")
ATTENTION_CHOICES = ("default", "eager", *_SDPA_BACKENDS)


@dataclass(frozen=True)
class SpeedOptions:
    """How a step runs; every value leaves the maths unchanged up to rounding."""

    fused_adamw: bool = False
    attention: str = "default"
    channels_last: bool = False
    compile: bool = False
    compile_min_steps: int = 0

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_CHOICES:
            raise ConfigError(f"attention must be one of {ATTENTION_CHOICES}, got {self.attention!r}")
        if self.compile_min_steps < 0:
            raise ConfigError(f"compile_min_steps must be >= 0, got {self.compile_min_steps}")

    def compiles(self, steps: int) -> bool:
        """Whether a stage of ``steps`` steps is long enough to repay compiling."""
        return self.compile and steps >= self.compile_min_steps

    def with_overrides(self, overrides: Mapping[str, Any]) -> SpeedOptions:
        """These options with some replaced; an unknown name or a value of the wrong type raises ConfigError."""
        known = {f.name: f.type for f in fields(self)}
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ConfigError(f"unknown speed options {unknown}; known: {sorted(known)}")
        for name, value in overrides.items():
            kind = {"bool": bool, "int": int, "str": str}[str(known[name])]
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ConfigError(f"speed option {name} takes a {kind.__name__}, got {value!r}")
        return replace(self, **overrides)


def device_keys(device: torch.device) -> list[str]:
    """Keys a device's defaults are filed under, most specific first (GPU name, then the type)."""
    if device.type == "cuda" and torch.cuda.is_available():
        return [torch.cuda.get_device_name(device), device.type]
    return [device.type]


@cache
def load_speed_defaults(path: Path = SPEED_DEFAULTS_PATH) -> dict[str, Any]:
    """The committed table: ``{"devices": {key: {"options": {...}, "measured": {...}}}}``."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def speed_defaults(
    device: str | torch.device, table: Mapping[str, Any] | None = None, overrides: Mapping[str, Any] | None = None
) -> SpeedOptions:
    """The measured defaults for ``device`` (torch's defaults if never measured), then ``overrides``."""
    devices = (table if table is not None else load_speed_defaults()).get("devices", {})
    options = SpeedOptions()
    for key in device_keys(torch.device(device)):
        if key in devices:
            options = SpeedOptions(**devices[key]["options"])
            break
    return options.with_overrides(overrides) if overrides else options


# ------------------------------------------------------------------------------------------- applying


def fused_supported(device: torch.device) -> bool:
    """Whether torch has a fused AdamW kernel for this device type."""
    try:  # torch's own list (private, so it may move)
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices
    except ImportError:
        return device.type in ("cuda", "cpu")
    return device.type in _get_fused_kernels_supported_devices()


def adamw_fused(options: SpeedOptions, device: str | torch.device) -> bool | None:
    """AdamW's ``fused`` argument: True where asked and supported, else None (torch's own choice)."""
    return True if options.fused_adamw and fused_supported(torch.device(device)) else None


def _sdpa_context(choice: str) -> contextlib.AbstractContextManager[Any]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    names = {"flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION", "cudnn": "CUDNN_ATTENTION", "math": "MATH"}
    backend = getattr(SDPBackend, names[choice])
    # MATH stays allowed after the pinned backend: inputs it cannot take (fp32 on flash) still run.
    try:
        return sdpa_kernel([backend, SDPBackend.MATH], set_priority=True)
    except TypeError:  # torch < 2.6 has no set_priority; its fixed order already ranks MATH last
        return sdpa_kernel([backend, SDPBackend.MATH])


@contextlib.contextmanager
def attention(module: nn.Module, choice: str) -> Iterator[None]:
    """Run ``module``'s attention as ``choice`` says for a while (restored after).

    ``eager`` turns timm's ``fused_attn`` off (softmax in plain ops); an SDPA backend name pins that
    backend for every ``scaled_dot_product_attention`` call, with the math kernel as fallback.
    """
    if choice not in ATTENTION_CHOICES:
        raise ConfigError(f"attention must be one of {ATTENTION_CHOICES}, got {choice!r}")
    timm_attention: list[Any] = [m for m in module.modules() if hasattr(m, "fused_attn")] if choice == "eager" else []
    saved = [m.fused_attn for m in timm_attention]
    for m in timm_attention:
        m.fused_attn = False
    try:
        with _sdpa_context(choice) if choice in _SDPA_BACKENDS else contextlib.nullcontext():
            yield
    finally:
        for m, value in zip(timm_attention, saved, strict=True):
            m.fused_attn = value


def channels_last_modules(module: nn.Module) -> list[nn.Module]:
    """Submodules that run faster in channels-last memory (they say so: ``prefers_channels_last``)."""
    return [m for m in module.modules() if getattr(m, "prefers_channels_last", False)]


def set_memory_format(
    modules: list[nn.Module], memory_format: torch.memory_format, optimizer: torch.optim.Optimizer | None = None
) -> None:
    """Move ``modules``' 4-d parameters, and the optimizer state kept beside them, to ``memory_format``.

    Fused and foreach AdamW want a parameter and its moments in the same layout, so a resumed
    optimizer's state follows its parameters.
    """
    for module in modules:
        module.to(memory_format=memory_format)  # type: ignore[call-overload]  # documented; the stubs lack it
        if optimizer is None:
            continue
        for param in module.parameters():
            state = optimizer.state.get(param, {})
            for key, value in state.items():
                if isinstance(value, torch.Tensor) and value.shape == param.shape and value.ndim == 4:
                    state[key] = value.contiguous(memory_format=memory_format)


def to_channels_last(module: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> list[nn.Module]:
    """Convert the CNN parts of ``module`` (and their optimizer state) to channels-last; returns those parts."""
    found = channels_last_modules(module)
    set_memory_format(found, torch.channels_last, optimizer)
    return found


def images_channels_last(batch: Any) -> Any:
    """A batch with its ``image`` tensor in channels-last memory (other entries untouched)."""
    if isinstance(batch, dict) and isinstance(batch.get("image"), torch.Tensor) and batch["image"].ndim == 4:
        return {**batch, "image": batch["image"].contiguous(memory_format=torch.channels_last)}
    return batch


# ------------------------------------------------------------------------------------------- deciding

NOISE = 0.02  # settings whose times are closer than this are a tie: the default stays as it was
# torch.compile changes how the step is built (graph breaks, recompiles, a compiler on the worker): it must
# win by more than the noise to be worth that
COMPILE_MARGIN = 0.05

# gpu_check decision option name -> the SpeedOptions field it decides
_DECIDES = {
    "fused AdamW": "fused_adamw",
    "SDPA backend": "attention",
    "channels-last": "channels_last",
    "torch.compile": "compile",
}


def _timed_as(name: str, value: Any) -> str:
    """The gpu_check setting name that times a SpeedOptions value."""
    if name == "attention":
        return "timm_eager" if value == "eager" else str(value)
    return "on" if value else "off"


def wins(decision: Mapping[str, Any], against: str, margin: float) -> bool:
    """Whether the fastest setting beats ``against`` by ``margin`` on the medians and on the minima.

    The minimum is the call least disturbed by the rest of the machine; asking both to agree keeps
    a noisy run from flipping a default. A setting that was not timed counts as the slowest one.
    """
    best = str(decision["faster"])
    for key in ("median_ms", "min_ms"):
        figures = decision.get(key)
        if not figures or best not in figures:
            continue
        other = figures.get(against, max(figures.values()))
        if other < figures[best] * (1 + margin):
            return False
    return best != against


def decide(
    decisions: Sequence[Mapping[str, Any]], previous: SpeedOptions | None = None
) -> tuple[SpeedOptions, list[str]]:
    """Defaults from gpu_check's option decisions, and one line per option saying why.

    A setting becomes the default when it beats the current one by ``NOISE`` (``COMPILE_MARGIN``
    for compile) on both medians and minima; otherwise the previous value stays. Where an option
    was timed in several places (channels-last: stage 1 and stage 2), it changes only if every place
    agrees. ``torch.compile`` on also sets ``compile_min_steps`` from the first call's extra time over
    the per-step saving.
    """
    options = previous or SpeedOptions()
    reasons: list[str] = []
    by_field: dict[str, list[Mapping[str, Any]]] = {}
    for d in decisions:
        if d.get("option") == "torch.compile" and d.get("backend", "inductor") != "inductor":
            reasons.append(f"compile: timed with backend {d['backend']!r}, not the inductor training uses; ignored")
            continue
        if d.get("option") in _DECIDES:
            by_field.setdefault(_DECIDES[d["option"]], []).append(d)
    for name, found in by_field.items():
        current = getattr(options, name)
        margin = COMPILE_MARGIN if name == "compile" else NOISE
        where = "; ".join(str(d.get("line", "")) for d in found)
        winners = {str(d["faster"]) for d in found}
        if len(winners) > 1 or not all(wins(d, _timed_as(name, current), margin) for d in found):
            reasons.append(f"{name}: no winner by {margin:.0%} over {current!r} everywhere, kept it ({where})")
            continue
        choice = winners.pop()
        value: Any = ("eager" if choice == "timm_eager" else choice) if name == "attention" else choice == "on"
        options = replace(options, **{name: value})
        if name == "compile":
            options = replace(options, compile_min_steps=_compile_break_even(found) if value else 0)
        reasons.append(f"{name}: {value!r} ({where})")
    return options, reasons


def _compile_break_even(decisions: list[Mapping[str, Any]]) -> int:
    """Steps after which compiling has paid for its first call: extra first-call time / saving per step."""
    worst = 0
    for d in decisions:
        medians = d["median_ms"]
        saved_s = (medians["off"] - medians["on"]) / 1e3
        extra_s = float(d.get("first_call_s") or 0.0) - medians["on"] / 1e3
        worst = max(worst, math.ceil(max(extra_s, 0.0) / saved_s) if saved_s > 0 else 0)
    return worst


def filed(options: SpeedOptions, measured: Mapping[str, Any]) -> dict[str, Any]:
    """One table row: the options and where they came from."""
    return {"options": asdict(options), "measured": dict(measured)}


def _iso(epoch: Any) -> str | None:
    """A report's epoch seconds as an ISO date-time in UTC (None stays None)."""
    if epoch is None:
        return None
    import datetime

    return datetime.datetime.fromtimestamp(float(epoch), datetime.UTC).isoformat(timespec="seconds")


PORTABLE_ON_CUDA = frozenset({"fused_adamw"})
"""Options one GPU's timing may set for every GPU (the ``cuda`` row): fused AdamW helps wherever torch has
the kernel, while the attention kernel (flash needs Ampere or newer, cuDNN's varies by release), channels-last
and compile (Triton's code for that architecture) are filed under the measured GPU's name only."""


def record_defaults(report: Mapping[str, Any], path: Path = SPEED_DEFAULTS_PATH) -> list[str]:
    """File the defaults a gpu_check report decides under its device's keys in ``path``; returns the keys.

    Smoke runs (toy sizes) file nothing: a toy model's winner says little about a real step. Each key's
    previous options are the starting point, so an option this run left undecided keeps its value.
    """
    meta = report.get("meta", {})
    decisions = list(report.get("options") or [])
    if meta.get("smoke") or not decisions:
        return []
    device_type = torch.device(str(meta.get("device", "cpu"))).type
    keys = [str(meta["device_name"]), device_type] if device_type == "cuda" else [device_type]
    table = json.loads(path.read_text()) if path.exists() else {"devices": {}}
    devices = table.setdefault("devices", {})
    for key in keys:
        previous = SpeedOptions(**devices[key]["options"]) if key in devices else None
        portable = key == "cuda"  # the row every other GPU falls back to: only what holds on any of them
        kept = (
            [d for d in decisions if _DECIDES.get(str(d.get("option"))) in PORTABLE_ON_CUDA] if portable else decisions
        )
        options, reasons = decide(kept, previous)
        if portable and len(kept) < len(decisions):
            reasons.append(f"only {sorted(PORTABLE_ON_CUDA)} filed here; the rest is under {keys[0]!r}")
        devices[key] = filed(
            options,
            {
                "device_name": meta.get("device_name"),
                "torch": meta.get("torch"),
                "threads": meta.get("torch_threads"),
                "at": _iso(meta.get("finished") or meta.get("started")),
                "precision": report.get("plan", {}).get("precision"),
                "why": reasons,
            },
        )
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(table, indent=1) + "\n")
    os.replace(tmp, path)
    load_speed_defaults.cache_clear()
    return keys

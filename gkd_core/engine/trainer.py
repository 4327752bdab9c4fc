"""The generic fit loop every stage runs through (STYLE.md section 6: the trainer stays generic).

A stage is an ``nn.Module`` task whose ``forward(batch)`` returns ``{"loss": scalar, <named
parts>..., "output"?: anything}``. ``fit`` runs ``steps`` optimizer steps over a step-indexed batch
source, logs every scalar entry as a ``MetricRow``, reports progress with an ETA, saves atomic
checkpoints, polls ``should_stop()`` once per step, and resumes transparently: when
``checkpoint_dir`` holds a checkpoint of the stage it restores the task, extra modules,
optimizer, scheduler and every RNG state, and continues from that step, so the following losses
are exactly those of an uninterrupted run (on CPU, with ``StepBatches`` or another step-indexed
source). A finished stage returns at once after loading its final weights.

Under ``torch.distributed`` (see ``engine/distributed.py``) the same loop runs on every rank: the
task is wrapped in DDP, each rank draws its shard of the global batch, the stop poll is agreed by
all ranks each step, logged scalars are averaged over ranks, and rank 0 alone writes checkpoints
(holding every rank's RNG state) and reports to the callbacks. A checkpoint written by N ranks
resumes on M ranks at the same step, global batch and data position.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from gkd_core.engine import distributed
from gkd_core.engine.batches import BatchSource, to_device
from gkd_core.engine.callbacks import Callbacks, MetricRow
from gkd_core.engine.checkpoint import latest_checkpoint, load_checkpoint, load_module_state, save_checkpoint
from gkd_core.engine.seeding import capture_rng_state, restore_rng_state, seed_everything
from gkd_core.engine.speed import (
    SpeedOptions,
    attention,
    images_channels_last,
    set_memory_format,
    to_channels_last,
)
from gkd_core.errors import CheckpointError, ConfigError, GKDError

_logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
_EMA_ALPHA = 0.1


class StopRequested(GKDError):
    """``should_stop()`` returned True; a checkpoint was saved at ``step`` (``checkpoint``)."""

    def __init__(self, stage: str, step: int, checkpoint: Path | None) -> None:
        super().__init__(f"stage {stage!r} stopped on request at step {step}; checkpoint: {checkpoint}")
        self.stage = stage
        self.step = step
        self.checkpoint = checkpoint


class NonFiniteLossError(GKDError):
    """The loss became NaN or infinite; training cannot continue meaningfully."""


@dataclass
class FitResult:
    """What a finished (or stopped) stage reports back."""

    steps_done: int
    last_metrics: dict[str, float] = field(default_factory=dict)
    stopped: bool = False
    checkpoint: Path | None = None
    resumed_from: int | None = None
    best_metric: float | None = None


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on the device when asked for (CPU and bf16-capable GPUs), else a no-op."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resolve_precision(device: torch.device, precision: str) -> tuple[str, str | None]:
    """The precision that will actually run, and a note when it had to fall back to fp32."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "fp32", "bf16 is not supported on this GPU; training in fp32"
    if precision == "bf16" and device.type not in ("cpu", "cuda"):
        return "fp32", f"bf16 autocast is not used on {device.type}; training in fp32"
    return precision, None


def _scalars(output: Mapping[str, Any]) -> dict[str, torch.Tensor | float]:
    """Entries of a task output that are one number (the trainer logs all of them)."""
    found: dict[str, torch.Tensor | float] = {}
    for key, value in output.items():
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            found[key] = value.detach()
        elif isinstance(value, int | float) and not isinstance(value, bool):
            found[key] = float(value)
    return found


def _values(scalars: Mapping[str, torch.Tensor | float]) -> dict[str, float]:
    # One device->host transfer for all tensor scalars instead of one sync per name.
    tensor_keys = [k for k, v in scalars.items() if isinstance(v, torch.Tensor)]
    result = {k: float(v) for k, v in scalars.items() if not isinstance(v, torch.Tensor)}
    if tensor_keys:
        stacked = torch.stack([scalars[k].float().reshape(()) for k in tensor_keys])  # type: ignore[union-attr]
        result.update(zip(tensor_keys, stacked.cpu().tolist(), strict=True))
    return result


def _trainable(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in optimizer.param_groups for p in group["params"] if p.requires_grad]


def eval_frozen_submodules(task: nn.Module) -> list[str]:
    """Put every submodule whose parameters are all frozen into eval mode; return their names.

    A frozen teacher or stage-2 encoder must not update BatchNorm statistics or apply dropout
    just because the surrounding task was put in train mode. Parameter-free modules (a task-level
    Dropout) are left alone unless they sit inside a frozen module.
    """
    frozen = []
    for name, module in task.named_modules():
        params = list(module.parameters())
        if name and params and not any(p.requires_grad for p in params):
            if module.training:
                frozen.append(name)
            module.eval()
    return frozen


def fit(
    task: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    batches: BatchSource,
    *,
    steps: int,
    stage: str,
    checkpoint_dir: Path | None,
    callbacks: Callbacks | None = None,
    checkpoint_every: int = 0,
    log_every: int = 1,
    device: str | torch.device = "cpu",
    precision: str = "fp32",
    grad_clip: float | None = None,
    seed: int | None = 0,
    config: Any = None,
    extra_modules: Mapping[str, nn.Module] | None = None,
    exclude_prefixes: Iterable[str] = (),
    resume: bool = True,
    track_best: str | None = None,
    keep_last: int = 2,
    raise_on_stop: bool = True,
    speed: SpeedOptions | None = None,
) -> FitResult:
    """Train ``task`` for ``steps`` optimizer steps, resumably.

    Args:
        task: module whose ``forward(batch)`` returns a dict with a scalar ``"loss"``; every other
            scalar entry is logged too. It is moved to ``device`` and put in train mode, except
            for submodules whose parameters are all frozen (teacher, frozen encoder): those run
            in eval mode.
        optimizer: built over the task's trainable parameters.
        scheduler: stepped once after every optimizer step (or None).
        batches: ``batches(start_step)`` yields the batches of ``start_step`` onward, the same
            ones on every call (``StepBatches`` does this); an optional ``steps_per_epoch``
            attribute gives metric rows their epoch.
        steps: total optimizer steps of the stage.
        stage: stage name (metric rows, checkpoint file names).
        checkpoint_dir: where checkpoints go and resumes come from; None disables both.
        callbacks: metrics/progress/checkpoint/event hooks and the ``should_stop`` poll.
        checkpoint_every: save every N steps (0: only at the end and on stop).
        log_every: emit metric rows and progress every N steps (and at the last step).
        device: where the task runs.
        precision: "fp32" or "bf16" (autocast; falls back to fp32 with an event where unsupported).
        grad_clip: clip the global gradient norm to this value (also logs ``grad_norm``).
        seed: seeds every RNG at a fresh start (a resume restores the saved RNG states instead).
        config: JSON-able description of the run, stored in each checkpoint.
        extra_modules: modules outside ``task`` that must be saved and restored too.
        exclude_prefixes: task state keys not to checkpoint (e.g. ``("teacher.",)``).
        resume: look for a checkpoint of ``stage`` in ``checkpoint_dir`` first.
        track_best: a logged metric name whose minimum is kept as the checkpoint's best metric.
        keep_last: checkpoints of the stage to keep on disk.
        raise_on_stop: raise ``StopRequested`` on a stop (else return ``FitResult(stopped=True)``).
        speed: attention kernel, channels-last CNN parts and ``torch.compile`` (when the steps left
            repay it); None runs eagerly with torch's defaults. Fused AdamW is the optimizer's own
            setting. The stages pass ``gkd_core.engine.speed.speed_defaults(device)``.

    Under a process group every rank calls ``fit`` with the same arguments; ``batches`` must shard by
    rank (``StepBatches`` does), and only rank 0's callbacks hear about metrics and checkpoints.

    Returns:
        FitResult with the completed step count and the last logged values.

    Raises:
        StopRequested: ``should_stop()`` returned True (after the checkpoint was written).
        NonFiniteLossError: the loss was NaN/inf at a logged step.
        CheckpointError: the checkpoint to resume from is corrupt or does not fit.
    """
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    if log_every < 1:
        raise ConfigError(f"log_every must be >= 1, got {log_every}")
    if checkpoint_every < 0:
        raise ConfigError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
    if grad_clip is not None and grad_clip <= 0:
        raise ConfigError(f"grad_clip must be > 0 or None, got {grad_clip}")
    callbacks = callbacks or Callbacks()
    device = torch.device(device)
    rank, world = distributed.rank(), distributed.world_size()
    main = rank == 0
    # Rank 0 reports; every rank still polls its own callbacks' should_stop (answers are combined).
    report = callbacks if main else Callbacks()
    if getattr(batches, "world_size", 1) != world:
        raise ConfigError(
            f"stage {stage!r}: training on {world} ranks needs a batch source sharded over them "
            f"(StepBatches built inside the process group); this one is for {getattr(batches, 'world_size', 1)}"
        )
    precision, note = resolve_precision(device, precision)
    if note:
        report.on_event(f"{stage}: {note}")
    extra = dict(extra_modules or {})
    excluded = tuple(exclude_prefixes)
    ckpt_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    task.to(device)

    start, last_metrics, best, resumed_path = 0, {}, None, None
    latest = latest_checkpoint(ckpt_dir, stage) if (ckpt_dir is not None and resume) else None
    if latest is not None:
        state = load_checkpoint(latest, require=("format", "stage", "step", "model", "optimizer", "rng"))
        start = _restore(state, latest, task, optimizer, scheduler, extra, excluded, stage, steps)
        ranks_note = _restore_rank_rng(state, rank, world, seed, start)
        last_metrics = dict(state.get("metrics") or {})
        best = state.get("best_metric")
        resumed_path = latest
        if start == steps:
            report.on_event(f"{stage}: already finished ({steps} steps); loaded {latest.name}")
            report.on_progress(stage, 1.0, 0.0)
            return FitResult(steps, last_metrics, False, latest, start, best)
        report.on_event(f"{stage}: resumed from step {start} of {steps} ({latest.name}){ranks_note}")
    elif seed is not None:
        seed_everything(distributed.rank_seed(seed, rank))

    def save(step: int) -> Path | None:
        if ckpt_dir is None:
            return None
        # Every rank's RNG state travels with the checkpoint (a collective: all ranks save together).
        rng_states = distributed.gather(capture_rng_state())
        if not main:
            return None
        path = save_checkpoint(
            ckpt_dir,
            stage=stage,
            step=step,
            model=task,
            optimizer=optimizer,
            scheduler=scheduler,
            modules=extra,
            rng_state=rng_states[0],
            rank_rng_states=rng_states if world > 1 else None,
            config=config,
            best_metric=best,
            metrics=last_metrics,
            total_steps=steps,
            exclude_prefixes=excluded,
            keep_last=keep_last,
        )
        report.on_checkpoint(path, stage, step)
        return path

    speed = speed or SpeedOptions()
    converted = to_channels_last(task, optimizer) if speed.channels_last else []
    kernels = contextlib.ExitStack()  # the attention kernel, for the whole loop (restored at the end)
    try:
        kernels.enter_context(attention(task, speed.attention))
        steps_per_epoch = getattr(batches, "steps_per_epoch", None)
        channels_last = bool(converted)
        model: Callable[..., Any] = distributed.wrap(task, device)
        compiled = speed.compiles(steps - start)
        if compiled:
            model = torch.compile(model)
        if speed != SpeedOptions():
            report.on_event(
                f"{stage}: speed options: attention {speed.attention}, fused AdamW "
                f"{'on' if optimizer.defaults.get('fused') else 'off'}, channels-last "
                f"{'on' if channels_last else 'off'}, compile {'on' if compiled else 'off'}"
            )
        task.train()
        eval_frozen_submodules(task)
        iterator: Iterator[Any] = iter(batches(start))
        ema: float | None = None
        last_saved: tuple[int, Path | None] | None = None
        params = _trainable(optimizer)
        step = start
        while step < steps:
            if distributed.any_rank(callbacks.should_stop()):
                path = last_saved[1] if last_saved and last_saved[0] == step else save(step)
                report.on_event(f"{stage}: stopped on request at step {step} of {steps}")
                if raise_on_stop:
                    raise StopRequested(stage, step, path)
                return FitResult(step, last_metrics, True, path, start if resumed_path else None, best)
            tick = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                raise ConfigError(
                    f"stage {stage!r}: the batch source ran out at step {step} of {steps}; "
                    "it must yield a batch for every step (StepBatches cycles epochs)"
                ) from None
            batch = to_device(batch, device)
            if channels_last:
                batch = images_channels_last(batch)
            optimizer.zero_grad(set_to_none=True)
            with autocast_context(device, precision):
                output = model(batch)
            if not isinstance(output, Mapping) or "loss" not in output:
                raise ConfigError(f"stage {stage!r}: task.forward must return a dict with a 'loss' entry")
            loss = output["loss"]
            loss.backward()
            scalars = _scalars(output)
            if grad_clip is not None:
                scalars["grad_norm"] = torch.nn.utils.clip_grad_norm_(params, grad_clip).detach()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1

            if step % log_every == 0 or step == steps:
                values = distributed.mean_over_ranks(_values(scalars))
                if not math.isfinite(values["loss"]):
                    parts = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
                    raise NonFiniteLossError(f"stage {stage!r}: non-finite loss at step {step} ({parts})")
                values["lr"] = float(optimizer.param_groups[0]["lr"])
                last_metrics = values
                if track_best is not None and track_best in values:
                    best = values[track_best] if best is None else min(best, values[track_best])
                epoch = (step - 1) // steps_per_epoch if steps_per_epoch else 0
                report.on_metrics([MetricRow(stage, step, epoch, name, v) for name, v in values.items()])
            # Time a step after its metrics are read, so that on a GPU the sync is inside the window.
            took = time.perf_counter() - tick
            ema = took if ema is None else (1 - _EMA_ALPHA) * ema + _EMA_ALPHA * took
            if step % log_every == 0 or step == steps:
                report.on_progress(stage, step / steps, ema * (steps - step))

            if step == steps or (checkpoint_every and step % checkpoint_every == 0):
                last_saved = (step, save(step))

        report.on_event(f"{stage}: finished {steps} steps")
        return FitResult(
            steps,
            last_metrics,
            False,
            last_saved[1] if last_saved else None,
            start if resumed_path else None,
            best,
        )
    finally:
        kernels.close()
        set_memory_format(converted, torch.contiguous_format, optimizer)  # exports want plain contiguous tensors


def _restore(
    state: dict[str, Any],
    path: Path,
    task: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    extra: Mapping[str, nn.Module],
    excluded: tuple[str, ...],
    stage: str,
    steps: int,
) -> int:
    """Load a training checkpoint into the live objects; return its step."""
    step = int(state["step"])
    if state["stage"] != stage:
        raise CheckpointError(f"checkpoint {path} belongs to stage {state['stage']!r}, not {stage!r}")
    if step > steps:
        raise CheckpointError(
            f"checkpoint {path} is at step {step}, beyond this stage's {steps} steps; "
            "use a new checkpoint directory or the original step count"
        )
    planned = state.get("total_steps")
    if planned is not None and planned != steps:
        _logger.warning("checkpoint %s was planned for %s steps, now %s", path, planned, steps)
    load_module_state(task, state["model"], exclude_prefixes=excluded, source=f"checkpoint {path}")
    saved_modules = state.get("modules") or {}
    for name, module in extra.items():
        if name not in saved_modules:
            raise CheckpointError(f"checkpoint {path} lacks the extra module {name!r}")
        load_module_state(module, saved_modules[name], source=f"checkpoint {path} module {name!r}")
    try:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            if state.get("scheduler") is None:
                raise CheckpointError(f"checkpoint {path} lacks the key 'scheduler'")
            scheduler.load_state_dict(state["scheduler"])
    except (ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path}: optimizer/scheduler state does not fit: {exc}") from exc
    restore_rng_state(state["rng"])
    _logger.info("resumed stage %s from %s at step %d", stage, path, step)
    return step


def _restore_rank_rng(state: Mapping[str, Any], rank: int, world: int, seed: int | None, step: int) -> str:
    """Give each rank its random stream back after ``_restore`` put rank 0's in place.

    Same world size: every rank restores its own saved state (an exact continuation). Another world
    size: rank 0 keeps the saved rank-0 state and the other ranks re-derive theirs from
    ``(seed, rank, step)``; model, optimizer, step and data position are exact either way. Returns a
    note for the resume event when the world size changed.
    """
    saved_world = int(state.get("world_size") or 1)
    per_rank = state.get("rank_rng") or []
    if saved_world == world:
        if world > 1 and len(per_rank) == world:
            restore_rng_state(per_rank[rank])
        return ""
    if rank > 0:
        seed_everything(distributed.rank_seed(seed or 0, rank, step))
    return f"; written by {saved_world} rank(s), continued on {world} at the same global batch and data position"

"""Atomic, ``weights_only``-loadable training checkpoints (STYLE.md section 6).

A checkpoint is one ``torch.save`` file holding the model (task) state dict, optional extra
modules, optimizer and scheduler state, the step, every global RNG state, the run config (as a
JSON string), the gkd_core version and the best metric. It is written to a temporary file in the
same directory, fsynced and renamed into place, and only then is the stage's small JSON manifest
(``<stage>.latest.json``) pointed at it. A file with a final name is therefore always complete,
and the manifest never names a file that is not.

Loading always goes through ``torch.load(weights_only=True)``: nothing in a checkpoint can run
code, which is why RNG states and configs are stored as tensors and plain types.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gkd_core.errors import CheckpointError

_logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "stage", "step", "model")
_STAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMPILE_PREFIX = "_orig_mod."


def _check_stage(stage: str) -> None:
    if not isinstance(stage, str) or not _STAGE_RE.match(stage):
        raise ValueError(f"stage name {stage!r} cannot name a checkpoint file: use letters, digits, '_', '.' or '-'")


def checkpoint_path(directory: Path, stage: str, step: int) -> Path:
    """The file name a checkpoint of ``stage`` at ``step`` gets inside ``directory``."""
    _check_stage(stage)
    return Path(directory) / f"{stage}-step{step:08d}.pt"


def manifest_path(directory: Path, stage: str) -> Path:
    """The JSON manifest naming the newest complete checkpoint of ``stage``."""
    _check_stage(stage)
    return Path(directory) / f"{stage}.latest.json"


def config_to_json(config: Any) -> str:
    """Serialise a dataclass or mapping config to JSON (Paths and tuples become strings/lists)."""
    if config is None:
        return "null"
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)

    def default(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        if isinstance(value, set | frozenset):
            return sorted(value)
        raise TypeError(f"config value {value!r} of type {type(value).__name__} is not JSON-serialisable")

    try:
        return json.dumps(config, default=default, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint config must be JSON-serialisable: {exc}") from exc


def strip_compile_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Remove every ``_orig_mod.`` segment that ``torch.compile`` adds to state-dict keys."""
    return {key.replace(_COMPILE_PREFIX, ""): value for key, value in state_dict.items()}


def _unwrap_compiled(module: nn.Module) -> nn.Module:
    inner = getattr(module, "_orig_mod", None)
    return inner if isinstance(inner, nn.Module) else module


def module_state(module: nn.Module, exclude_prefixes: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """A module's state dict without compile prefixes and without keys under ``exclude_prefixes``.

    Excluding e.g. ``("teacher.",)`` keeps a frozen teacher out of every stage-1 checkpoint.
    """
    excluded = tuple(exclude_prefixes)
    state = strip_compile_prefix(_unwrap_compiled(module).state_dict())
    return {k: v for k, v in state.items() if not (excluded and k.startswith(excluded))}


def load_module_state(
    module: nn.Module,
    state_dict: Mapping[str, Any],
    *,
    exclude_prefixes: Iterable[str] = (),
    source: str = "checkpoint",
) -> None:
    """Load ``state_dict`` into ``module`` strictly, except for keys under ``exclude_prefixes``.

    Raises:
        CheckpointError: a key is missing or unexpected, or a shape does not fit (names the key).
    """
    excluded = tuple(exclude_prefixes)
    target = _unwrap_compiled(module)
    state = strip_compile_prefix(state_dict)
    own = target.state_dict()
    missing = [k for k in own if k not in state and not (excluded and k.startswith(excluded))]
    unexpected = [k for k in state if k not in own]
    if missing:
        raise CheckpointError(f"{source}: missing key {missing[0]!r} ({len(missing)} missing in all)")
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key {unexpected[0]!r} ({len(unexpected)} unexpected in all)")
    for key, value in state.items():
        if isinstance(value, torch.Tensor) and value.shape != own[key].shape:
            raise CheckpointError(
                f"{source}: key {key!r} has shape {tuple(value.shape)}, the model expects {tuple(own[key].shape)}"
            )
    target.load_state_dict(state, strict=False)


def _fsync_dir(directory: Path) -> None:
    # Make the rename itself durable; not every platform lets you open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(fileobj)`` on a temp file next to ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def save_checkpoint(
    directory: Path,
    *,
    stage: str,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    modules: Mapping[str, nn.Module] | None = None,
    rng_state: Mapping[str, Any] | None = None,
    rank_rng_states: list[Mapping[str, Any]] | None = None,
    config: Any = None,
    best_metric: float | None = None,
    metrics: Mapping[str, float] | None = None,
    total_steps: int | None = None,
    exclude_prefixes: Iterable[str] = (),
    keep_last: int = 2,
) -> Path:
    """Write a checkpoint atomically, point the stage manifest at it, and prune older ones.

    Args:
        directory: where the stage's checkpoints live (created if needed).
        stage: stage name; part of the file name.
        step: completed optimizer steps.
        model: the task module (its state dict minus ``exclude_prefixes``).
        optimizer, scheduler: saved through their ``state_dict()`` when given.
        modules: extra modules saved under their names (e.g. heads kept outside the task).
        rng_state: from ``seeding.capture_rng_state()``; None stores no RNG state.
        rank_rng_states: every rank's RNG state in rank order when several ranks trained (the
            checkpoint then records that world size); ``rng_state`` is rank 0's.
        config: a JSON-able mapping or dataclass describing the run.
        best_metric: best value of the tracked metric so far.
        metrics: the last logged scalars.
        total_steps: the stage length the run was planned for.
        exclude_prefixes: model keys not to save (a frozen teacher).
        keep_last: how many checkpoints of this stage to keep (>= 1).

    Returns:
        The checkpoint file's path.
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    directory = Path(directory)
    path = checkpoint_path(directory, stage, step)
    from gkd_core import __version__

    payload: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "stage": stage,
        "step": int(step),
        "total_steps": None if total_steps is None else int(total_steps),
        "model": module_state(model, exclude_prefixes),
        "modules": {name: module_state(mod) for name, mod in (modules or {}).items()},
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "rng": None if rng_state is None else dict(rng_state),
        "world_size": len(rank_rng_states) if rank_rng_states else 1,
        "rank_rng": [dict(r) for r in rank_rng_states] if rank_rng_states else [],
        "config": config_to_json(config),
        "code_version": __version__,
        "best_metric": None if best_metric is None else float(best_metric),
        "metrics": {str(k): float(v) for k, v in (metrics or {}).items()},
        "saved_at": time.time(),
    }
    atomic_write_bytes(path, lambda handle: torch.save(payload, handle))
    size = path.stat().st_size
    manifest = {"stage": stage, "step": int(step), "file": path.name, "size": size}
    atomic_write_bytes(manifest_path(directory, stage), lambda h: h.write(json.dumps(manifest).encode()))
    _prune(directory, stage, keep_last)
    _logger.info("saved checkpoint %s (%d bytes)", path, size)
    return path


def _stage_checkpoints(directory: Path, stage: str) -> list[tuple[int, Path]]:
    pattern = re.compile(rf"^{re.escape(stage)}-step(\d+)\.pt$")
    found = []
    if directory.is_dir():
        for entry in directory.iterdir():
            match = pattern.match(entry.name)
            if match and entry.is_file():
                found.append((int(match.group(1)), entry))
    return sorted(found)


def _prune(directory: Path, stage: str, keep_last: int) -> None:
    for _, old in _stage_checkpoints(directory, stage)[:-keep_last]:
        with contextlib.suppress(OSError):
            old.unlink()
    # Temp files of writes killed half-way (this stage only; the current write is already renamed).
    for stale in directory.glob(f".{stage}-step*.pt.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def latest_checkpoint(directory: Path, stage: str) -> Path | None:
    """The newest complete checkpoint of ``stage`` in ``directory``, or None when there is none.

    Files with a final name only ever appear through an atomic rename of a fully written, fsynced
    temp file, so the highest-step one is complete, even when a crash came between the rename and
    the manifest update. The manifest records each file's size, which catches later damage.

    Raises:
        CheckpointError: the newest file is shorter or longer than its manifest says (truncated or
            overwritten outside gkd_core); the message names it.
    """
    directory = Path(directory)
    found = _stage_checkpoints(directory, stage)
    if not found:
        return None
    newest = found[-1][1]
    manifest = manifest_path(directory, stage)
    try:
        info = json.loads(manifest.read_text()) if manifest.is_file() else {}
        recorded = int(info["size"]) if info.get("file") == newest.name else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        _logger.warning("ignoring unreadable checkpoint manifest %s: %s", manifest, exc)
        recorded = None
    if recorded is not None and newest.stat().st_size != recorded:
        raise CheckpointError(
            f"checkpoint {newest} has {newest.stat().st_size} bytes but was written with {recorded}: "
            "it is truncated or damaged; delete it to resume from an older checkpoint"
        )
    return newest


def load_checkpoint(path: Path, *, require: Iterable[str] = REQUIRED_KEYS) -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)`` onto the CPU.

    The ``config`` entry comes back as the decoded JSON value.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt, not a checkpoint, or lacks one of
            ``require`` (the message names the file and the key).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged zips/pickles
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(exc).__name__}: {str(exc)[:200]})"
        ) from exc
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, not a checkpoint dict")
    for key in require:
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} lacks the key {key!r}")
    if payload.get("format", FORMAT_VERSION) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {payload['format']}, newer than this gkd_core reads ({FORMAT_VERSION})"
        )
    raw_config = payload.get("config")
    if isinstance(raw_config, str):
        try:
            payload["config"] = json.loads(raw_config)
        except ValueError as exc:
            raise CheckpointError(f"checkpoint {path} has an unreadable config: {exc}") from exc
    return payload


def read_model_state(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """The task state dict of a checkpoint, restricted to keys under ``prefix`` with it removed.

    Stage handover uses this: ``read_model_state(stage1_ckpt, "student.")`` gives the distilled
    student's weights ready for ``load_module_state(student, ...)``.

    Raises:
        CheckpointError: the file is unreadable or holds no key under ``prefix``.
    """
    model = load_checkpoint(path)["model"]
    state = {k[len(prefix) :]: v for k, v in strip_compile_prefix(model).items() if k.startswith(prefix)}
    if not state:
        raise CheckpointError(f"checkpoint {path} holds no model key starting with {prefix!r}")
    return state

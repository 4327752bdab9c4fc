"""Safe loading of local backbone weights (safetensors, or .pt/.pth through ``weights_only=True``).

Pickled checkpoints are never unpickled with arbitrary code execution: only
``torch.load(weights_only=True)`` is used. Shapes are checked key by key so a wrong file fails with
the first mismatching key named, instead of a wall of ``load_state_dict`` text.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from gkd_core.errors import ConfigError

_logger = logging.getLogger(__name__)

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_WRAPPER_KEYS = ("state_dict", "model", "module", "student", "backbone")
_STRIP_PREFIXES = ("_orig_mod.", "module.", "model.")
_EXPORT_BACKBONE_PREFIX = "backbone.model."  # gkd_core.export's layout: backbone.model.<timm key>, head.<key>


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` dict from a local weights file.

    Raises:
        ConfigError: the file is missing, has an unsupported suffix, or holds no tensors.
    """
    if not path.is_file():
        raise ConfigError(f"weights file {str(path)!r} does not exist; pass 'none', 'timm' or an existing file")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        from safetensors.torch import load_file

        raw: object = load_file(str(path), device="cpu")
    elif suffix in PICKLE_SUFFIXES:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors come in many classes; report them all the same way
            raise ConfigError(
                f"weights file {str(path)!r} could not be read with torch.load(weights_only=True): {exc}"
            ) from exc
    else:
        raise ConfigError(
            f"weights file {str(path)!r} has unsupported suffix {suffix!r}; "
            f"use one of {SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES}"
        )
    state = _backbone_of_export(_unwrap(raw))
    if not state:
        raise ConfigError(f"weights file {str(path)!r} holds no tensors")
    return state


def _backbone_of_export(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A GKD export (student backbone + head) used as weights: keep the backbone's timm tensors.

    This is how one job's distilled or fine-tuned student becomes the next job's teacher
    (``artifact://<job id>/student.safetensors``).
    """
    if not any(key.startswith(_EXPORT_BACKBONE_PREFIX) for key in state):
        return state
    return {k[len(_EXPORT_BACKBONE_PREFIX) :]: v for k, v in state.items() if k.startswith(_EXPORT_BACKBONE_PREFIX)}


def _unwrap(raw: object) -> dict[str, torch.Tensor]:
    """Find the tensor dict inside common checkpoint wrappers and strip compile/DDP prefixes."""
    while isinstance(raw, Mapping) and not any(isinstance(v, torch.Tensor) for v in raw.values()):
        inner = next((raw[k] for k in _WRAPPER_KEYS if k in raw and isinstance(raw[k], Mapping)), None)
        if inner is None:
            break
        raw = inner
    if not isinstance(raw, Mapping):
        return {}
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            continue
        name = str(key)
        for prefix in _STRIP_PREFIXES:
            if name.startswith(prefix):
                name = name[len(prefix) :]
        state[name] = value
    return state


def apply_state_dict(model: nn.Module, state: dict[str, torch.Tensor], *, source: str, model_name: str) -> None:
    """Load ``state`` into ``model`` after timm's own key conversion, checking every shape first.

    timm models ship a ``checkpoint_filter_fn`` that maps original release keys (e.g. DINOv2's) to
    timm names and resamples position embeddings; it is applied when present.

    Raises:
        ConfigError: a model key is missing from the file or has a different shape.
    """
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if callable(filter_fn):
        try:
            state = dict(filter_fn(dict(state), model))
        except Exception as exc:  # the filter may choke on a foreign file; the shape check below explains
            _logger.debug("checkpoint_filter_fn of %s failed (%s); loading keys as they are", model_name, exc)
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise ConfigError(
                f"weights {source!r} do not fit {model_name!r}: key {key!r} is missing from the file "
                f"(file has {len(state)} tensors, e.g. {sorted(state)[:3]})"
            )
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise ConfigError(
                f"weights {source!r} do not fit {model_name!r}: first mismatching key {key!r} has shape "
                f"{tuple(state[key].shape)} in the file but {tuple(tensor.shape)} in the model "
                "(check the model name and the width/depth overrides)"
            )
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        _logger.info(
            "ignoring %d keys of %s not used by %s, e.g. %s", len(unexpected), source, model_name, unexpected[:3]
        )
    model.load_state_dict({k: state[k] for k in expected}, strict=True)

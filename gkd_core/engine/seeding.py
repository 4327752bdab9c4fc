"""Seeding and RNG-state capture, so CPU runs are reproducible and resumes continue the same stream.

RNG states are converted to tensors and plain Python types so that a checkpoint holding them
loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds all CUDA devices


def deterministic_cpu(threads: int = 1) -> None:
    """Make CPU results repeatable bit for bit: fixed intra-op thread count, deterministic kernels.

    Floating-point reductions split across a different number of threads round differently, so
    the thread count is part of what makes two CPU runs identical.
    """
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def capture_rng_state() -> dict[str, Any]:
    """Return every global RNG state as tensors and plain types (``weights_only``-loadable)."""
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)
    kind, keys, pos, has_gauss, cached = np_state
    py_version, py_internal, py_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss_next": py_gauss if py_gauss is None else float(py_gauss),
        },
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore the global RNG states captured by ``capture_rng_state``.

    CUDA states are restored only when the device count matches; otherwise they are skipped
    (a resume on a different machine cannot replay the same GPU stream anyway).
    """
    torch.set_rng_state(state["torch"].to(dtype=torch.uint8, device="cpu"))
    npst = state["numpy"]
    keys = npst["keys"].numpy().astype(np.uint32)
    np.random.set_state((npst["kind"], keys, npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
    py = state["python"]
    internal = tuple(int(v) for v in py["internal"].tolist())
    random.setstate((py["version"], internal, py["gauss_next"]))
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available() and len(cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.to(dtype=torch.uint8, device="cpu") for s in cuda_states])


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run a block with all global RNGs seeded to ``seed``, then put the outer states back.

    Used for per-sample data augmentation: each sample's randomness is a function of its seed
    only, whatever process (main or loader worker) fetches it and whatever ran before.
    """
    # CPU only: touching CUDA here would break forked DataLoader workers.
    py_state = random.getstate()
    np_state = np.random.get_state()
    torch_state = torch.get_rng_state()
    try:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.random.default_generator.manual_seed(seed)
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
        torch.set_rng_state(torch_state)

"""timm imports through the torchvision shim and a tiny ViT gives intermediate features on CPU."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import torch

import gkd_core  # noqa: F401


def test_timm_imports_in_a_fresh_process() -> None:
    code = "import gkd_core, timm, torchvision; print(timm.__version__)"
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_tiny_vit_forward_intermediates() -> None:
    import timm

    model: Any = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=3)
    feats = model.forward_intermediates(torch.randn(2, 3, 32, 32), indices=[0, 2], intermediates_only=True)
    assert [tuple(f.shape) for f in feats] == [(2, 192, 2, 2), (2, 192, 2, 2)]
    assert all(torch.isfinite(f).all() for f in feats)

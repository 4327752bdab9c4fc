"""``gkd demo``: the best end-to-end path the project has today.

Until the service and the pipeline exist it only proves the ML stack works (a tiny timm ViT
builds and returns multi-level features on CPU) and says plainly what is not built yet.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console

_console = Console()


def run_demo() -> int:
    """Run the demo and return a process exit code."""
    import gkd_core  # noqa: F401  (installs the torchvision shim before timm)

    # isort: split
    import timm
    import torch

    model: Any = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=64, depth=2)
    features = model.forward_intermediates(torch.randn(1, 3, 64, 64), indices=2, intermediates_only=True)
    shapes = ", ".join(str(tuple(f.shape)) for f in features)
    _console.print(f"[green]ML stack ok[/green]: tiny ViT feature maps {shapes}")
    _console.print("[yellow]Not built yet[/yellow]: the service, worker and synthetic benchmark; "
                   "this command becomes the full distillation demo when they land.")
    return 0

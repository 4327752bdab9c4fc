"""A tiny training task with every kind of randomness the trainer must replay on resume.

Dropout and an in-forward augmentation draw from torch's, NumPy's and Python's global RNGs; the
dataset augments each sample with torch's RNG (seeded per sample slot by ``StepBatches``).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from torch import nn

import gkd_core  # noqa: F401
from gkd_core.engine import StepBatches, adamw_cosine


class ToyDataset:
    """Twelve fixed 2x8x8 images with a scalar target; random flip and noise per fetch."""

    def __init__(self, size: int = 12) -> None:
        gen = torch.Generator().manual_seed(7)
        self.images = torch.randn(size, 2, 8, 8, generator=gen)
        self.targets = torch.randn(size, generator=gen)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.images[index]
        if torch.rand(()) < 0.5:
            image = image.flip(-1)
        image = image + 0.1 * torch.randn_like(image)
        return {"image": image, "target": self.targets[index]}


class ToyTask(nn.Module):
    """Conv + dropout regressor; forward returns the loss and two named parts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(4, 1)
        self.autocast_seen: list[bool] = []

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        x = batch["image"]
        # Global-RNG augmentation: torch noise, NumPy brightness, Python-random flip.
        x = x * float(np.random.uniform(0.8, 1.2)) + 0.05 * torch.randn_like(x)
        if random.random() < 0.5:
            x = x.flip(-2)
        self.autocast_seen.append(torch.is_autocast_enabled("cpu"))
        feats = self.drop(self.norm(self.conv(x)).relu().mean(dim=(2, 3)))
        pred = self.head(feats).squeeze(-1).float()
        mse = (pred - batch["target"]).pow(2).mean()
        l1 = (pred - batch["target"]).abs().mean()
        return {"loss": mse + 0.1 * l1, "mse": mse, "l1": l1, "output": pred}


def make_run(init_seed: int = 0, steps: int = 8) -> tuple[ToyTask, Any, Any, StepBatches]:
    """A fresh task, optimizer, scheduler and batch source; ``init_seed`` sets the initial weights."""
    torch.manual_seed(init_seed)
    task = ToyTask()
    optimizer, scheduler = adamw_cosine(task, lr=1e-2, steps=steps, min_lr=1e-4)
    return task, optimizer, scheduler, StepBatches(ToyDataset(), batch_size=4, seed=3)

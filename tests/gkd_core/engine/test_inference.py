"""Sliding-window inference equals whole-image inference for a per-pixel model."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gkd_core.engine import predict_logits, sliding_window_logits, whole_image_logits


@pytest.fixture(scope="module")
def pixel_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 1), nn.ReLU(), nn.Conv2d(8, 5, 1)).eval()


@pytest.mark.parametrize(
    ("size", "window", "stride"),
    [((37, 29), 16, 11), ((40, 40), (16, 24), (8, 12)), ((10, 7), 16, 12), ((16, 16), 16, 16)],
)
def test_sliding_equals_whole_for_per_pixel_model(
    pixel_model: nn.Module, size: tuple[int, int], window: int, stride: int
) -> None:
    image = torch.rand(2, 3, *size)
    slide = sliding_window_logits(pixel_model, image, 5, window, stride)
    whole = whole_image_logits(pixel_model, image, 5)
    assert slide.shape == (2, 5, *size)
    torch.testing.assert_close(slide, whole, rtol=1e-5, atol=1e-5)


def test_every_pixel_is_covered_and_overlaps_are_averaged() -> None:
    calls: list[tuple[int, ...]] = []

    def ones(x: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(x.shape))
        return torch.ones(x.shape[0], 2, x.shape[2], x.shape[3])

    out = sliding_window_logits(ones, torch.rand(1, 3, 30, 20), 2, window=16, stride=10)
    assert torch.equal(out, torch.ones(1, 2, 30, 20))  # average of ones is one: no gaps, no double counts
    assert len(calls) == 3 * 2 and all(c == (1, 3, 16, 16) for c in calls)


def test_low_resolution_logits_are_upsampled() -> None:
    def stride4(x: torch.Tensor) -> torch.Tensor:
        return torch.zeros(x.shape[0], 3, x.shape[2] // 4, x.shape[3] // 4)

    assert sliding_window_logits(stride4, torch.rand(1, 3, 24, 24), 3, 16, 8).shape == (1, 3, 24, 24)
    assert predict_logits(stride4, torch.rand(1, 3, 24, 24), 3, mode="whole").shape == (1, 3, 24, 24)


def test_bad_arguments() -> None:
    model = nn.Conv2d(3, 2, 1)
    with pytest.raises(ValueError, match="exceeds window"):
        sliding_window_logits(model, torch.rand(1, 3, 8, 8), 2, window=4, stride=5)
    with pytest.raises(ValueError, match="B x 3 x h x w"):
        sliding_window_logits(model, torch.rand(1, 3, 8, 8), 3, window=4, stride=4)
    with pytest.raises(ValueError, match="B x C x H x W"):
        whole_image_logits(model, torch.rand(3, 8, 8), 2)
    with pytest.raises(ValueError, match="'tiles'"):
        predict_logits(model, torch.rand(1, 3, 8, 8), 2, mode="tiles")

"""RGB <-> HSV on float tensors in [0, 1] (...x3xHxW), for hue/saturation jitter without PIL round trips.

Channels sit at dim -3, so one image and a batch go through the same elementwise ops (a batch on the
GPU gives each image exactly what the single-image call gives it).
"""

from __future__ import annotations

import torch


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """...x3xHxW RGB in [0, 1] -> ...x3xHxW HSV with hue in [0, 1)."""
    r, g, b = rgb.unbind(-3)
    maxc, _ = rgb.max(-3)
    minc, _ = rgb.min(-3)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h)) % 1.0
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_hsv``."""
    h, s, v = hsv.unbind(-3)
    h6 = (h % 1.0) * 6.0
    i = torch.floor(h6)
    f = h6 - i
    p = v * (1 - s)
    q = v * (1 - s * f)
    t = v * (1 - s * (1 - f))
    i = i.long() % 6
    r = torch.stack([v, q, p, p, t, v])
    g = torch.stack([t, v, v, q, p, p])
    b = torch.stack([p, p, t, v, v, q])
    idx = i.unsqueeze(0)
    return torch.stack([r.gather(0, idx)[0], g.gather(0, idx)[0], b.gather(0, idx)[0]], dim=-3)

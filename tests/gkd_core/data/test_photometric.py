"""The photometric distortion deferred to the batch on the device equals the in-loader one."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import pytest
import torch

from gkd_core.data import DeferredPhotometric, SegTrainTransform, apply_deferred, open_dataset, photometric_distortion
from gkd_core.data.photometric import apply_photometric, draw_photometric
from gkd_core.engine import StepBatches
from gkd_core.stages.stage2 import Stage2Config, source_batches
from tests.gkd_core.data import fixtures as fx


def _rows(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.rand(n, 3, 9, 11, generator=torch.Generator().manual_seed(1))
    rows = torch.stack([draw_photometric(torch.Generator().manual_seed(i)) for i in range(n)])
    return images, rows


def test_a_batch_gets_exactly_what_each_image_gets_alone() -> None:
    images, rows = _rows(64)
    # Every combination of parts occurs among 64 draws (contrast first/last, saturation, hue on/off).
    assert len({tuple(r[[1, 3, 5]].tolist()) for r in rows}) == 8
    batched = apply_photometric(images, rows)
    for i in range(len(images)):
        alone = photometric_distortion(images[i], torch.Generator().manual_seed(i))
        assert torch.equal(batched[i], alone), i
    assert batched.min() >= 0 and batched.max() <= 1 and not torch.equal(batched, images)


def test_deferred_batches_equal_in_loader_batches_on_cpu(tmp_path: Path) -> None:
    root = fx.folder(tmp_path, n=6)
    cfg = Stage2Config(batch_size=2, crop_size=32)
    in_loader = open_dataset(root, "folder", "train", transform=SegTrainTransform(crop=4))
    deferred = open_dataset(root, "folder", "train", transform=SegTrainTransform(crop=4, photometric=False))
    plain = source_batches(in_loader, cfg, seed=3, device="cpu")
    moved = source_batches(DeferredPhotometric(deferred), cfg, seed=3, device="cpu", batch_transform=apply_deferred)
    assert plain.loader_options.num_workers >= 1  # the default: one worker per available core
    for a, b in zip(islice(plain(2), 4), islice(moved(2), 4), strict=True):
        assert a.keys() == b.keys() and a["name"] == b["name"]
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])


def test_batch_transform_runs_on_the_batches_device() -> None:
    seen: list[torch.device] = []

    def record(batch: dict) -> dict:
        seen.append(batch["image"].device)
        return batch

    data = [{"image": torch.zeros(3, 2, 2)} for _ in range(4)]
    source = StepBatches(data, 2, device="cpu", batch_transform=record)
    assert next(source(0))["image"].shape == (2, 3, 2, 2) and seen == [torch.device("cpu")]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_batch_matches_the_cpu_result() -> None:
    images, rows = _rows(32)
    on_gpu = apply_photometric(images.cuda(), rows.cuda()).cpu()
    # The same elementwise float32 ops; CUDA may contract a multiply-add, so allow float32 rounding.
    torch.testing.assert_close(on_gpu, apply_photometric(images, rows), atol=1e-6, rtol=0)

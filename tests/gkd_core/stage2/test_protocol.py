"""The paper's stage-2 protocol: short side x random scale, cat_max_ratio crops, test-time fit-and-upsample."""

from __future__ import annotations

from typing import Any

import torch

from gkd_core.data.transforms import SegTrainTransform
from gkd_core.stages.stage2 import Stage2Config, evaluate_segmentation, fit_keep_ratio, train_transform


def test_fit_keep_ratio_matches_mmseg_resize() -> None:
    assert fit_keep_ratio((1024, 2048), (1024, 512)) == (512, 1024)  # Cityscapes at 1024x512
    assert fit_keep_ratio((720, 1280), (1024, 512)) == (512, 910)  # the short edge binds
    assert fit_keep_ratio((1052, 1914), (1280, 720)) == (704, 1280)  # GTAV frame at BDD's scale: long edge binds


def test_cat_max_ratio_avoids_crops_one_class_dominates() -> None:
    mask = torch.zeros(64, 64, dtype=torch.long)
    mask[:, 48:] = 1  # class 1 only in the right quarter: most 32 px crops are all class 0
    image = torch.rand(3, 64, 64)
    plain = SegTrainTransform(32, scale=(1.0, 1.0), flip=False, photometric=False)
    strict = SegTrainTransform(32, scale=(1.0, 1.0), flip=False, photometric=False, cat_max_ratio=0.75)

    def dominant_share(transform: SegTrainTransform, seed: int) -> float:
        _, crop = transform(image, mask, generator=torch.Generator().manual_seed(seed))
        counts = torch.bincount(crop.flatten(), minlength=2).float()
        return float(counts.max() / counts.sum())

    plain_shares = [dominant_share(plain, s) for s in range(40)]
    strict_shares = [dominant_share(strict, s) for s in range(40)]
    assert sum(s >= 0.75 for s in plain_shares) > 20
    assert sum(s >= 0.75 for s in strict_shares) < sum(s >= 0.75 for s in plain_shares) / 4


def test_base_size_sets_the_short_side_before_the_random_scale() -> None:
    cfg = Stage2Config(steps=1, crop_size=32, base_size=16, scale=(1.0, 1.0), flip=False, photometric=False)
    transform = train_transform(cfg)
    image, mask = torch.rand(3, 64, 128), torch.zeros(64, 128, dtype=torch.long)
    out, out_mask = transform(image, mask, generator=torch.Generator().manual_seed(0))
    # 64x128 -> short side 16 -> 16x32, padded to the 32x32 crop with ignore labels below.
    assert out.shape == (3, 32, 32) and bool((out_mask[16:] == 255).all()) and bool((out_mask[:16] == 0).all())


class _Brightness(torch.nn.Module):
    """Class 1 where the image is bright, class 0 where it is dark (a model whose answer is easy to check)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        bright = images.mean(dim=1, keepdim=True) - 0.5
        return torch.cat([-bright, bright], dim=1)


def test_evaluation_fits_the_image_then_scores_upsampled_logits_on_full_labels() -> None:
    mask = torch.zeros(40, 80, dtype=torch.long)
    mask[:, :40] = 1
    image = torch.zeros(3, 40, 80)
    image[:, :, :40] = 1.0
    dataset: Any = [{"image": image, "mask": mask}]  # any indexable with len serves
    windows: list[tuple[int, ...]] = []
    model = _Brightness()
    model.register_forward_pre_hook(lambda _m, args: windows.append(tuple(args[0].shape)))
    fitted = evaluate_segmentation(model, dataset, 2, window=32, stride=16, resize=(40, 20))
    assert len(windows) == 2  # the 20x40 fitted image (padded to 32 high): one row of two windows
    windows.clear()
    native = evaluate_segmentation(model, dataset, 2, window=32, stride=16)
    assert len(windows) == 8  # 40x80 at native size: 2 rows x 4 columns
    assert fitted.miou == native.miou == 1.0 and fitted.images == 1

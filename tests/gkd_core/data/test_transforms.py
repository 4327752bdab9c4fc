"""Transforms: shapes, value ranges, nearest-neighbour masks, and determinism from a generator."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from gkd_core.data import SegEvalTransform, SegTrainTransform, Stage1Transform, photometric_distortion
from gkd_core.data._color import hsv_to_rgb, rgb_to_hsv
from gkd_core.data.transforms import resize_mask


def _pair(h: int = 40, w: int = 56) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(3, h, w, generator=g)
    mask = torch.randint(0, 5, (h, w), generator=g)
    mask[:4] = 255
    return image, mask


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_resize_mask_is_nearest_and_exact() -> None:
    mask = torch.tensor([[0, 7], [200, 255]])
    up = resize_mask(mask, (4, 4))
    assert up.tolist() == [[0, 0, 7, 7], [0, 0, 7, 7], [200, 200, 255, 255], [200, 200, 255, 255]]
    _, m = _pair()
    down = resize_mask(m, (13, 17))
    assert set(down.unique().tolist()) <= set(m.unique().tolist()) and down.dtype == torch.int64


def test_seg_train_transform_shapes_values_and_padding() -> None:
    image, mask = _pair()
    values = set(mask.unique().tolist())
    t = SegTrainTransform(crop=32, scale=(0.5, 2.0))
    for seed in range(20):
        img, m = t(image, mask, generator=_gen(seed))
        assert img.shape == (3, 32, 32) and m.shape == (32, 32) and m.dtype == torch.int64
        assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
        assert set(m.unique().tolist()) <= values  # nearest resize + ignore padding never invent labels
    small = SegTrainTransform(crop=(64, 80), scale=(0.5, 0.5), photometric=False, flip=False)
    img, m = small(image, mask, generator=_gen(1))
    assert img.shape == (3, 64, 80) and (m[20:, :] == 255).all() and (img[:, 20:, :] == 0).all()


def test_seg_train_transform_keeps_image_and_mask_aligned() -> None:
    # The image encodes its own mask: any misalignment between them shows up as a mismatch.
    mask = torch.zeros(40, 56, dtype=torch.int64)
    mask[:, 28:] = 1
    mask[10:20, :] = 2
    image = torch.stack([mask.float() / 2.0] * 3)
    t = SegTrainTransform(crop=24, scale=(1.0, 2.0), photometric=False)
    for seed in range(10):
        img, m = t(image, mask, generator=_gen(seed))
        # interior pixels (away from label edges, where bilinear blends) must agree with the mask
        interior = (torch.nn.functional.max_pool2d(m[None, None].float(), 3, 1, 1)[0, 0]
                    == -torch.nn.functional.max_pool2d(-m[None, None].float(), 3, 1, 1)[0, 0])
        interior[[0, -1], :] = False  # a label edge just outside the crop is invisible in m
        interior[:, [0, -1]] = False
        assert torch.allclose(img[0][interior], m[interior].float() / 2.0, atol=1e-4)


def test_seg_train_transform_is_deterministic_given_a_generator() -> None:
    image, mask = _pair()
    t = SegTrainTransform(crop=24)
    a, b, c = t(image, mask, generator=_gen(5)), t(image, mask, generator=_gen(5)), t(image, mask, generator=_gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_seg_eval_transform() -> None:
    image, mask = _pair(40, 60)
    assert SegEvalTransform()(image, mask)[0] is image
    img, m = SegEvalTransform(20)(image, mask)
    assert img.shape == (3, 20, 30) and m.shape == (20, 30)
    img, m = SegEvalTransform((16, 16), resize_mask=False)(image, mask)
    assert img.shape == (3, 16, 16) and m.shape == (40, 60)


def test_photometric_distortion_stays_in_range() -> None:
    image, _ = _pair()
    for seed in range(10):
        out = photometric_distortion(image, _gen(seed))
        assert out.shape == image.shape and float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_hsv_round_trip() -> None:
    image, _ = _pair()
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(image)), image, atol=1e-5)


def test_stage1_transform_is_a_pure_function_of_the_generator() -> None:
    image, _ = _pair(48, 64)
    t = Stage1Transform(32)
    torch.manual_seed(123)
    random.seed(123)
    before = (torch.get_rng_state(), random.getstate())
    outs = [t(image, generator=_gen(s)) for s in range(12)]
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]  # training RNG untouched
    assert all(o.shape == (3, 32, 32) and torch.isfinite(o).all() for o in outs)
    assert torch.equal(t(image, generator=_gen(3)), outs[3])
    assert not torch.equal(outs[0], outs[1])


def test_stage1_augmentation_is_timms_deit_recipe() -> None:
    from timm.data.auto_augment import RandAugment
    from timm.data.random_erasing import RandomErasing

    t = Stage1Transform(224)
    ra = t.augment.randaugment
    assert isinstance(ra, RandAugment) and ra.num_layers == 2
    names = {op.name for op in ra.ops}
    assert {"Invert", "SolarizeAdd", "PosterizeIncreasing", "SolarizeIncreasing"} <= names  # inc1 op set
    assert all(op.magnitude == 9 and op.hparams["magnitude_std"] == 0.5 for op in ra.ops)
    assert isinstance(t.augment.erasing, RandomErasing) and t.augment.erasing.probability == 0.25
    assert t.augment.erasing.mode == "pixel"


def test_random_erasing_writes_normal_noise_in_normalised_space() -> None:
    image = torch.full((3, 64, 64), 0.5)
    t = Stage1Transform(64, scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=False, randaugment=None, erasing=1.0)
    out = t(image, generator=_gen(0))
    changed = (out - image).abs() > 1e-6
    assert changed.any() and not changed.all()
    noise = ((out - 0.5) / torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1))[changed]
    assert 0.8 < float(noise.std()) < 1.2  # N(0, 1) after Normalize, as timm applies it


def test_the_strongest_posterize_keeps_one_bit() -> None:
    """At timm's ceiling magnitude 10, PosterizeIncreasing would keep 0 bits, which Pillow refuses."""
    from PIL import Image

    ra = Stage1Transform(32).augment.randaugment
    assert ra is not None
    posterize = next(op for op in ra.ops if op.name == "PosterizeIncreasing")
    posterize.magnitude, posterize.magnitude_std, posterize.prob = 10.0, 0.0, 1.0
    out = posterize(Image.new("RGB", (8, 8), (200, 100, 50)))
    assert out.size == (8, 8)


@pytest.mark.parametrize("make", [
    lambda: SegTrainTransform(crop=24, base_size=30, cat_max_ratio=0.75),
    lambda: SegTrainTransform(crop=(20, 28), scale=(0.3, 1.5)),
    lambda: Stage1Transform(16),
])  # fmt: skip
def test_uint8_images_give_what_the_converted_image_gives(make) -> None:
    from gkd_core.engine.seeding import isolated_rng

    transform = make()
    assert transform.takes_uint8
    for seed in range(12):
        # As the decoder hands images over: HxWx3 uint8 memory seen as 3xHxW.
        pixels = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (37, 45, 3), dtype=np.uint8))
        pixels = pixels.permute(2, 0, 1)
        mask = torch.randint(0, 4, pixels.shape[1:], generator=torch.Generator().manual_seed(seed))
        args = () if isinstance(transform, Stage1Transform) else (mask,)
        with isolated_rng(seed):
            whole = transform(pixels.float().div_(255.0), *args)
        with isolated_rng(seed):
            window = transform(pixels, *args)
        for a, b in zip(whole if args else [whole], window if args else [window], strict=True):
            assert torch.equal(a, b), seed

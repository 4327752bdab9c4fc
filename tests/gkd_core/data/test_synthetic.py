"""The synthetic benchmark: deterministic bytes, roles, valid folder layout, and a real colour shortcut."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from gkd_core.data import TINY_SIZES, generate_benchmark, load_benchmark, open_dataset, validate_dataset
from gkd_core.data.shortcut import colour_shortcut_miou
from gkd_core.data.synthetic import BenchmarkSizes, render_sample
from gkd_core.data.synthetic_scene import CLASSES, ROAD, SKY
from gkd_core.data.synthetic_styles import (
    FIXED_PALETTES,
    POOL_MIN_PALETTE_DISTANCE,
    TARGET_STYLES,
    TOON_BORROW_SHIFTS,
    TOON_OWN_PROB,
    TOON_PALETTE,
    sample_style,
)
from gkd_core.errors import ConfigError

SIZE = 64


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    generate_benchmark(out, seed=0, size=SIZE, sizes=TINY_SIZES)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes(bench: Path, tmp_path: Path) -> None:
    generate_benchmark(tmp_path / "again", seed=0, size=SIZE, sizes=TINY_SIZES)
    assert _files(bench) == _files(tmp_path / "again")
    generate_benchmark(tmp_path / "other", seed=1, size=SIZE, sizes=TINY_SIZES)
    a, b = _files(bench), _files(tmp_path / "other")
    assert a.keys() == b.keys() and a["toon/images/train/toon_train_00000.png"] != b[
        "toon/images/train/toon_train_00000.png"]


def test_an_image_does_not_depend_on_the_counts() -> None:
    a = render_sample(0, "night", "val", 3, SIZE)
    b = render_sample(0, "night", "val", 3, SIZE)
    c = render_sample(0, "night", "val", 4, SIZE)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and not np.array_equal(a[1], c[1])


def test_benchmark_json_roles_and_layout(bench: Path) -> None:
    info = load_benchmark(bench)
    assert info["source"] == "toon" and info["pool"] == "pool" and info["targets"] == list(TARGET_STYLES)
    assert len(info["targets"]) >= 4 and len(info["classes"]) >= 6 and info["layout"] == "folder"
    assert {d["role"] for d in info["domains"].values()} == {"source", "target", "pool"}
    for name, d in info["domains"].items():
        report = validate_dataset(bench / d["path"], "folder")
        assert report.ok, report.summary()
        assert {s: r.pairs for s, r in report.splits.items()} == d["splits"], name
    assert json.loads((bench / "toon" / "classes.json").read_text())["names"] == list(CLASSES)


def test_every_class_appears_and_layout_carries_meaning(bench: Path) -> None:
    ds = open_dataset(bench / "toon", "folder", "train")
    seen: set[int] = set()
    for i in range(len(ds)):
        m = ds[i]["mask"]
        seen |= set(m.unique().tolist())
        rows = np.arange(SIZE)[:, None].repeat(SIZE, 1)
        assert rows[(m == SKY).numpy()].mean() < rows[(m == ROAD).numpy()].mean()  # sky above road
    assert seen == set(range(len(CLASSES)))


def test_pool_styles_are_disjoint_from_targets() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        st = sample_style("pool", rng)
        for fixed in FIXED_PALETTES.values():
            assert np.linalg.norm(st.palette - fixed, axis=1).mean() >= POOL_MIN_PALETTE_DISTANCE
        assert st.brightness >= 0.6 and not st.night and st.fog == 0 and st.blur == 0 and st.noise <= 0.02
        assert st.texture not in ("checker", "dots") and st.posterize == 0


def test_toon_palette_is_a_strong_but_imperfect_cue() -> None:
    rng = np.random.default_rng(0)
    draws = np.stack([sample_style("toon", rng).palette for _ in range(2000)])  # N x K x 3
    own = np.all(np.isclose(draws, TOON_PALETTE[None]), axis=-1)  # N x K: class kept its own colour
    assert abs(own.mean() - TOON_OWN_PROB) < 0.03
    # Every borrowed colour is the toon colour of the class one of TOON_BORROW_SHIFTS away.
    borrowed = [np.roll(TOON_PALETTE, s, axis=0)[None] for s in TOON_BORROW_SHIFTS]
    assert np.all(own | np.any([np.all(np.isclose(draws, b), axis=-1) for b in borrowed], axis=0))


def test_source_colours_are_a_shortcut_that_fails_on_targets(bench: Path) -> None:
    scores = colour_shortcut_miou(bench, fit_domain="toon")
    # Strong but imperfect: colour alone is far better on toon than anywhere else, yet not enough.
    assert 0.25 < scores["toon"] < 0.8, scores
    assert all(scores[t] < 0.2 for t in TARGET_STYLES), scores
    pool_fit = colour_shortcut_miou(bench, fit_domain="pool")
    assert pool_fit["pool"] < 0.3, pool_fit  # pool colours carry no class identity


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="size"):
        generate_benchmark("/nonexistent-never-written", size=8)
    with pytest.raises(ConfigError, match="unknown domain"):
        generate_benchmark("/nonexistent-never-written", domains=["mars"])
    with pytest.raises(ConfigError, match=">= 0"):
        generate_benchmark("/nonexistent-never-written", sizes=BenchmarkSizes(source_train=-1))

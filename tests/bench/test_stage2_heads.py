"""Plumbing of bench/stage2_heads.py at a tiny size: every head gets a timed, FLOP-counted step."""

from __future__ import annotations

from bench.stage2_heads import HEADS, report, run

TINY_VIT = {"depth": 2, "embed_dim": 32, "num_heads": 2}
TINY_M2F = {"mask2former": {"num_queries": 8, "num_layers": 2, "encoder_layers": 1, "num_points": 256}}


def test_every_head_is_timed_against_the_same_run_peak() -> None:
    result = run(
        size=32, batch=2, steps=1, warmup=0, model="vit_tiny_patch16_224", overrides=TINY_VIT, head_options=TINY_M2F
    )
    rows = {r.head: r for r in result["rows"]}
    assert set(rows) == set(HEADS) and result["peak_flops"] > 0
    assert all(r.median_s > 0 and r.flops > 0 and 0 < r.fraction_of_peak < 1 for r in rows.values())
    assert rows["mask2former"].channels == 256  # the paper's width
    assert rows["mask2former"].flops > rows["linear"].flops
    text = report(result)
    assert "fp32 matmul peak (same run)" in text and "mask2former" in text

"""Tests of gkd_core.models: backbones, weights, the frozen teacher and token-grid matching."""

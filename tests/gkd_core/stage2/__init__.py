"""Tests for gkd_core stage2."""

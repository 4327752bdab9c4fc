"""Tests for gkd_core export."""

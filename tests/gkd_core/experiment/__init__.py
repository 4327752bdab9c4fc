"""Tests for gkd_core experiment."""

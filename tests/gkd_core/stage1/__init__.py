"""Tests of GKD stage 1: QSD heads, masking, losses and the two-step run."""

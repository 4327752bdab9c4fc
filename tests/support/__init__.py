"""Test helpers that start real servers (SeaweedFS S3) for the tests that need them."""

"""Test helpers that start real servers (SeaweedFS S3, the API in a thread) for the tests that need them."""

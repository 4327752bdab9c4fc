"""Celery workers: thin tasks over worker.pipeline, the one place the service meets gkd_core."""

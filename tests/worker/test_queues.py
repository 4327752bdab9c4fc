"""A job re-sent by the worker or its sweeper goes back to the queue it was submitted to (one queue per GPU kind)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.worker_env import tiny_spec
from tests.worker.test_pipeline import make_env
from worker import sweeper


def test_the_sweeper_resends_a_job_to_its_own_queue(
    tmp_path: Path, tiny_bench: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_env(tmp_path, tiny_bench, queues=["gpu", "a100"])
    job_id = env.submit(tiny_spec("on-a100", resources={"queue": "a100", "gpus": 1}))
    sent: list[tuple[str, str]] = []
    monkeypatch.setattr(sweeper, "enqueue_job", lambda job, *, queue, settings: sent.append((job, queue)))
    sweeper.sweep_once(env.context, requeue_after_s=0)
    assert sent == [(job_id, "a100")]

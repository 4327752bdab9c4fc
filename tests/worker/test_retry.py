"""Transient errors are told apart from the rest; backoff grows, caps and jitters."""

from __future__ import annotations

import kombu.exceptions
import pytest
import sqlalchemy.exc

from service.storage import ObjectNotFound, StorageAuthError, StorageUnavailable
from worker.retry import BackoffPolicy, is_transient, should_retry


@pytest.mark.parametrize(
    "exc",
    [
        StorageUnavailable("s3 down"),
        sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("server closed the connection")),
        kombu.exceptions.OperationalError("broker unreachable"),
        ConnectionResetError("reset"),
        TimeoutError("slow"),
    ],
)
def test_transient_errors(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("corrupt image"),
        StorageAuthError("bad secret"),  # retrying will not fix a wrong key
        ObjectNotFound("jobs/x"),
        sqlalchemy.exc.IntegrityError("INSERT", {}, Exception("duplicate")),
        RuntimeError("bug"),
    ],
)
def test_permanent_errors(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_explicit_cause_counts_but_context_does_not() -> None:
    try:
        try:
            raise ConnectionError("socket")
        except ConnectionError as inner:
            raise RuntimeError("checkpoint upload failed") from inner
    except RuntimeError as wrapped:
        assert is_transient(wrapped)
    try:
        try:
            raise ConnectionError("socket")
        except ConnectionError:
            raise ValueError("bad label value 300") from None
    except ValueError as unrelated:
        assert not is_transient(unrelated)


def test_should_retry_stops_at_max_attempts() -> None:
    exc = StorageUnavailable("down")
    assert should_retry(exc, attempt=1, max_attempts=3)
    assert should_retry(exc, attempt=2, max_attempts=3)
    assert not should_retry(exc, attempt=3, max_attempts=3)
    assert not should_retry(ValueError("x"), attempt=1, max_attempts=3)


def test_backoff_grows_caps_and_jitters() -> None:
    policy = BackoffPolicy(base_s=2, factor=3, max_s=50, jitter=0.5)
    no_jitter = [policy.delay(n, rand=lambda: 0.0) for n in range(1, 6)]
    assert no_jitter == [2, 6, 18, 50, 50]
    full = [policy.delay(n, rand=lambda: 1.0) for n in range(1, 6)]
    assert full == [1, 3, 9, 25, 25]
    assert policy.delay(10_000, rand=lambda: 0.0) == 50
    with pytest.raises(ValueError, match="1-based"):
        policy.delay(0)
    with pytest.raises(ValueError, match="jitter"):
        BackoffPolicy(jitter=2)
    with pytest.raises(ValueError, match="base_s"):
        BackoffPolicy(base_s=10, max_s=1)


def test_an_unreadable_spec_is_retried_elsewhere_not_waited_out_in_place() -> None:
    from worker.retry import SpecUnreadable, is_outage, is_transient, is_user_error

    exc = SpecUnreadable("this worker cannot read the job's spec")
    assert is_transient(exc) and not is_outage(exc) and not is_user_error(exc)

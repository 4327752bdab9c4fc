"""Domain errors raised by the service layer; the API maps each class to one HTTP status in one place."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """Base of every error the service raises on purpose (never an HTTPException)."""

    title = "Request failed"

    def __init__(self, detail: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra or {}


class NotFound(DomainError):
    """The resource does not exist, or belongs to another team (the two are indistinguishable)."""

    title = "Not found"


class JobNotFound(NotFound):
    """No job with this id for this team."""


class InvalidTransition(DomainError):
    """A job or evaluation cannot move from its current state to the requested one."""

    title = "Invalid state transition"

    def __init__(self, detail: str, *, current: str | None = None, requested: str | None = None) -> None:
        super().__init__(detail, extra={"current_status": current, "requested_status": requested})
        self.current = current
        self.requested = requested


class Conflict(DomainError):
    """The request conflicts with existing state (e.g. an Idempotency-Key reused with another body)."""

    title = "Conflict"


class ValidationFailed(DomainError):
    """The request is well-formed but its content is unusable; ``errors`` name each field and fix."""

    title = "Validation failed"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0]["message"] if errors else "invalid request"
        super().__init__(first if len(errors) == 1 else f"{len(errors)} problems; first: {first}")
        self.errors = errors
        self.extra = {"errors": errors}


class BadRequest(DomainError):
    """The request cannot be read (malformed token, parameter or body)."""

    title = "Bad request"


class InvalidPageToken(BadRequest):
    """A page token was altered, truncated or belongs to another listing."""

    title = "Invalid page token"


class TooManyRequests(DomainError):
    """The team has too much of something under way; ``retry_after_s`` says when to try again."""

    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = retry_after_s


class Unauthorized(DomainError):
    """No API key, or an unknown/revoked one."""

    title = "Unauthorized"


class Forbidden(DomainError):
    """A valid key that may not do this (an operator's route needs an admin key)."""

    title = "Forbidden"


def field_error(field: str, message: str, fix: str, **extra: Any) -> dict[str, Any]:
    """One entry of ValidationFailed.errors: the field path, what is wrong, and how to fix it."""
    return {"field": field, "message": message, "fix": fix, **extra}

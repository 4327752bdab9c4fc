"""Exceptions raised by the SDK: API errors carry the problem+json fields (RFC 9457)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ClientError(Exception):
    """Base class of every error the SDK raises on purpose."""


class TransportError(ClientError):
    """The server could not be reached (connection refused, DNS, timeout) after all retries."""


class ChecksumError(ClientError):
    """A downloaded artifact's sha256 differs from the one the API listed."""


class WaitTimeout(ClientError):
    """``wait_for`` ran past its timeout before the job reached a terminal status."""


@dataclass(frozen=True)
class FieldError:
    """One validation problem: where it is (``loc``, e.g. ``["body", "stage1", "steps"]``) and why."""

    loc: tuple[str | int, ...]
    msg: str
    type: str = ""

    @property
    def field(self) -> str:
        """Dotted location without the ``body`` prefix, e.g. ``stage1.steps``."""
        parts = [str(p) for p in self.loc if p != "body"]
        return ".".join(parts)

    @classmethod
    def from_obj(cls, obj: Any) -> FieldError:
        """Accept FastAPI's ``{loc, msg, type}`` and the flatter ``{field, message}`` shapes."""
        if not isinstance(obj, dict):
            return cls(loc=(), msg=str(obj))
        loc = obj.get("loc")
        if loc is None and obj.get("field") is not None:
            loc = [p for p in str(obj["field"]).split(".") if p]
        if isinstance(loc, str):
            loc = [loc]
        msg = str(obj.get("msg") or obj.get("message") or obj.get("detail") or "")
        if obj.get("fix"):
            msg += f" ({obj['fix']})"
        return cls(loc=tuple(loc or ()), msg=msg, type=str(obj.get("type", "")))


@dataclass
class APIError(ClientError):
    """The API answered with an error status; fields mirror the problem+json body."""

    status: int
    title: str
    detail: str | None = None
    type: str = "about:blank"
    instance: str | None = None
    errors: list[FieldError] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.status} {self.title}"
        if self.detail and self.detail != self.title:
            text += f": {self.detail}"
        if self.errors:
            shown = "; ".join(f"{e.field or '(body)'}: {e.msg}" for e in self.errors[:3])
            more = f" (+{len(self.errors) - 3} more)" if len(self.errors) > 3 else ""
            text += f" [{shown}{more}]"
        return text

    @classmethod
    def from_response(cls, status: int, body: Any, reason: str = "") -> APIError:
        """Build the most specific subclass for a status code and a (maybe non-JSON) body."""
        data: dict[str, Any] = body if isinstance(body, dict) else {}
        detail = data.get("detail")
        raw_errors = data.get("errors")
        # FastAPI's default 422 puts the list under "detail"; accept it too.
        if raw_errors is None and isinstance(detail, list):
            raw_errors, detail = detail, None
        if detail is not None and not isinstance(detail, str):
            detail = str(detail)
        if not data and isinstance(body, str) and body.strip():
            detail = body.strip()[:300]
        errors = [FieldError.from_obj(e) for e in (raw_errors or []) if e is not None]
        kind = _STATUS_CLASSES.get(status, APIError)
        return kind(
            status=status,
            title=str(data.get("title") or reason or "HTTP error"),
            detail=detail,
            type=str(data.get("type") or "about:blank"),
            instance=data.get("instance"),
            errors=errors,
            body=data,
        )


class AuthError(APIError):
    """401/403: the API key is missing, wrong or revoked."""


class NotFoundError(APIError):
    """404: no such resource for this team."""


class ConflictError(APIError):
    """409: e.g. cancelling a finished job, or an Idempotency-Key reused with another body."""


class ValidationError(APIError):
    """400/422: the request was rejected; ``errors`` names the fields."""


class ServerError(APIError):
    """5xx from the API."""


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: ValidationError,
    401: AuthError,
    403: AuthError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    500: ServerError,
    502: ServerError,
    503: ServerError,
    504: ServerError,
}

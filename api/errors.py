"""One mapping from errors to RFC 9457 problem+json responses (DomainError classes, storage and request errors)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import DataError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from service.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    InvalidTransition,
    NotFound,
    TooManyRequests,
    Unauthorized,
    ValidationFailed,
)
from service.storage import StorageError

_logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

STATUS_BY_ERROR: tuple[tuple[type[DomainError], int], ...] = (
    (NotFound, 404),
    (InvalidTransition, 409),
    (Conflict, 409),
    (ValidationFailed, 422),
    (BadRequest, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (TooManyRequests, 429),
)

PROBLEM_SCHEMA: dict[str, Any] = {
    "content": {
        PROBLEM_JSON: {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                    "errors": {"type": "array", "items": {"type": "object"}},
                },
            }
        }
    }
}


def problem_response(
    status: int,
    title: str,
    detail: str,
    *,
    request: Request | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    """A problem+json response; ``extra`` members (e.g. ``errors``) go into the body."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    if request is not None:
        body["instance"] = request.url.path
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the problem statuses a route may answer."""
    descriptions = {
        400: "Malformed request",
        401: "Missing or invalid API key",
        403: "The key may not do this (an operator's route: use an admin key)",
        404: "Not found (or another team's)",
        409: "Conflict with the current state",
        413: "Body too large",
        415: "Body is not JSON",
        422: "Invalid content; `errors` names each field and fix",
        429: "Too much under way for this team; retry after `Retry-After` seconds",
        503: "A dependency (database or artifact storage) is unavailable; retry",
    }
    return {s: {"description": descriptions.get(s, "Error"), **PROBLEM_SCHEMA} for s in statuses}


def _domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    status = next((code for cls, code in STATUS_BY_ERROR if isinstance(exc, cls)), 400)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(exc, TooManyRequests):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return problem_response(status, exc.title, exc.detail, request=request, headers=headers, **exc.extra)


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or ".".join(str(p) for p in loc)


_FIXES = {
    "extra_forbidden": "remove this field (see the JobSpec schema in /docs)",
    "missing": "add this field",
    "literal_error": "use one of the allowed values",
}


def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    # To a client, any storage failure (unreachable, refused credentials, bad configuration) is a
    # dependency that is down: 503, whatever the class.
    assert isinstance(exc, StorageError)
    _logger.warning("artifact storage failed on %s %s: %r", request.method, request.url.path, exc)
    return problem_response(503, "Storage unavailable", str(exc), request=request)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    if any(e.get("type") == "json_invalid" for e in errors):
        first = next(e for e in errors if e.get("type") == "json_invalid")
        return problem_response(
            400, "Malformed JSON", f"the body is not valid JSON: {first.get('msg')}", request=request
        )
    items = []
    for error in errors:
        kind = str(error.get("type", ""))
        message = str(error.get("msg", "")).removeprefix("Value error, ")
        fix = _FIXES.get(kind) or message
        if kind.startswith(("greater", "less")):
            fix = f"use a value {str(error.get('msg', '')).removeprefix('Input should be ')}"
        items.append({"field": _field(tuple(error.get("loc", ()))), "message": message, "fix": fix, "type": kind})
    detail = f"{items[0]['field']}: {items[0]['message']}" if items else "invalid request"
    if len(items) > 1:
        detail = f"{len(items)} problems; first: {detail}"
    return problem_response(422, "Validation failed", detail, request=request, errors=items)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's 405 names only the first route's)."""
    from api.openapi_errors import leaf_routes

    methods: set[str] = set()
    for route in leaf_routes(request.app.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods | {"OPTIONS"}) if methods else []


def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:
        allow = ", ".join(allowed_methods(request))
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": allow})
        headers = {**(headers or {}), "Allow": allow}
    return problem_response(exc.status_code, detail, detail, request=request, headers=headers)


def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # A dropped connection or an unreachable (or locked) database is a dependency that is down, not a bug.
    _logger.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        503,
        "Database unavailable",
        "the database did not answer; retry shortly",
        request=request,
        headers={"Retry-After": "5"},
    )


def _data_error(request: Request, exc: Exception) -> JSONResponse:
    # Defence in depth: input the schemas let through but the database cannot store is the client's fault.
    _logger.warning("database refused a value on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        400, "Bad request", "a value in the request cannot be stored (e.g. NUL characters)", request=request
    )


def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(500, "Internal error", "an unexpected error occurred; it has been logged", request=request)


def install_error_handlers(app: FastAPI) -> None:
    """Register every handler on ``app`` (one place; routes never build error responses)."""
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(StorageError, _storage_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DataError, _data_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)  # every pooled connection busy for pool_timeout
    app.add_exception_handler(Exception, _unexpected)

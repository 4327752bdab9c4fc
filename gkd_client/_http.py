"""The SDK's HTTP layer: one httpx client, timeouts, retries with backoff, problem+json errors.

Retries happen only where repeating a request cannot do harm: GET/HEAD, and POST when the caller
set an ``Idempotency-Key`` (the API then replays the first result instead of creating twice).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from gkd_client.errors import APIError, TransportError

_logger = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=5.0)


class HTTP:
    """Thin wrapper over ``httpx.Client`` that knows the base URL, the key and the retry policy."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        retries: int = 3,
        backoff_s: float = 0.25,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self._sleep = sleep
        headers = {"Accept": "application/json, application/problem+json", "User-Agent": "gkd-sdk/0.1"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport, follow_redirects=False
        )

    def close(self) -> None:
        self.client.close()

    @staticmethod
    def is_idempotent(method: str, headers: Mapping[str, str] | None) -> bool:
        """GET/HEAD/DELETE always (deleting twice leaves the same state); POST only with an Idempotency-Key."""
        if method.upper() in ("GET", "HEAD", "DELETE"):
            return True
        return method.upper() == "POST" and any(k.lower() == "idempotency-key" for k in (headers or {}))

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and response.headers.get("Retry-After", "").isdigit():
            return min(float(response.headers["Retry-After"]), 30.0)
        return min(self.backoff_s * (2**attempt), 10.0)

    def send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request (with retries where safe); raise APIError on an error status."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        attempts = 1 + (self.retries if self.is_idempotent(method, headers) else 0)
        for attempt in range(attempts):
            response: httpx.Response | None = None
            try:
                response = self.client.request(method, path, params=clean, json=json, headers=dict(headers or {}))
            except httpx.TransportError as exc:
                if attempt + 1 >= attempts:
                    raise TransportError(f"cannot reach {self.base_url}: {_describe(exc)}") from exc
                _logger.debug("retrying %s %s after %s", method, path, exc)
            else:
                if response.status_code not in RETRY_STATUSES or attempt + 1 >= attempts:
                    raise_for_problem(response)
                    return response
                _logger.debug("retrying %s %s after status %s", method, path, response.status_code)
            self._sleep(self._delay(attempt, response))
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send and decode the JSON body."""
        response = self.send(method, path, **kwargs)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise TransportError(f"{method} {path}: the server answered with non-JSON content") from exc


def raise_for_problem(response: httpx.Response) -> None:
    """Raise the APIError subclass for an error status, with the problem+json fields."""
    if response.status_code < 400:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    raise APIError.from_response(response.status_code, body, response.reason_phrase)


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused or host unreachable"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__

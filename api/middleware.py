"""ASGI middleware: request body limits and content types (413/415), and Prometheus request metrics."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.metrics import ApiMetrics

_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _problem(status: int, title: str, detail: str, path: str) -> tuple[dict[str, Any], bytes]:
    body = json.dumps(
        {"type": "about:blank", "title": title, "status": status, "detail": detail, "instance": path}
    ).encode()
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())],
    }
    return start, body


class BodyGuard:
    """Reads the whole body up front (bounded by ``max_bytes``) so oversize and non-JSON bodies are refused
    before any route runs: 413 when Content-Length or the streamed size exceeds the limit, 415 when a
    non-empty body is not JSON."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope.get("path", "")
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send, 413, "Body too large", f"the body exceeds {self.max_bytes} bytes", path)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, 413, "Body too large", f"the body exceeds {self.max_bytes} bytes", path)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        media = headers.get("content-type", "").split(";")[0].strip().lower()
        if body and not (media == "application/json" or media.endswith("+json")):
            await self._refuse(
                send,
                415,
                "Unsupported media type",
                f"send the body as application/json (got {media or 'no content type'})",
                path,
            )
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, status: int, title: str, detail: str, path: str) -> None:
        start, body = _problem(status, title, detail, path)
        await send(start)
        await send({"type": "http.response.body", "body": body})


class RequestMetrics:
    """Counts requests by route template, method and status, and observes latency per route."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics, templates: list[str]) -> None:
        self.app = app
        self.metrics = metrics
        # Requests refused before routing (413/415) still get their route template as the label.
        self.templates = [(compile_path(t)[0], t) for t in templates]

    def _route(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is not None and isinstance(getattr(route, "path", None), str):
            return str(route.path)
        path = scope.get("path", "")
        return next((template for regex, template in self.templates if regex.match(path)), "unmatched")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = self._route(scope)
            self.metrics.requests.labels(route=route, method=scope["method"], status=str(status)).inc()
            self.metrics.latency.labels(route=route, method=scope["method"]).observe(time.perf_counter() - start)

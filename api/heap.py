"""Keep full garbage collections off the tail of request latency: freeze the heap the server runs on.

A full (generation-2) collection scans every container object the process tracks. A serving process
holds about 320,000 of them after start-up (FastAPI, pydantic, SQLAlchemy, Celery's client, the routes),
so each full collection stopped it for 150-185 ms on the 2-core build machine, and the requests that
arrived meanwhile (30 at 200 req/s) set the p99 (``gc.callbacks``, measured with bench/api_latency.py).
Almost none of those objects ever become garbage. ``gc.freeze()`` moves them to the permanent
generation, which no collection scans; afterwards a full collection takes about 1 ms.

The server freezes once its start-up is complete (after a collection, so start-up garbage is not kept),
and again whenever a request finds new modules imported since (a route's lazy import: those modules are
as long-lived). Cyclic garbage that exists at such a moment is frozen with the rest and never freed;
that happens a handful of times in a process's life, so it stays bounded. Objects frozen this way are
still freed by reference counting.
"""

from __future__ import annotations

import gc
import sys

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def freeze_heap(*, collect: bool) -> int:
    """Move every tracked object to the permanent generation (after a full collection if ``collect``)."""
    if collect:
        gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class FrozenHeap:
    """ASGI middleware: freeze the heap when start-up completes and after every lazy import."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.modules_at_freeze: int | None = None

    def _refreeze_if_grown(self, *, collect: bool) -> None:
        if len(sys.modules) != self.modules_at_freeze:
            freeze_heap(collect=collect)
            self.modules_at_freeze = len(sys.modules)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":

            async def send_and_freeze(message: Message) -> None:
                if message["type"] == "lifespan.startup.complete":
                    self._refreeze_if_grown(collect=True)
                await send(message)

            await self.app(scope, receive, send_and_freeze)
            return
        # The first request of a server without a lifespan collects once; later ones only re-freeze.
        self._refreeze_if_grown(collect=self.modules_at_freeze is None)
        await self.app(scope, receive, send)

"""The serving app freezes its heap after start-up and after lazy imports (api/heap.py)."""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from api.heap import FrozenHeap


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Give the test process its collector back afterwards (frozen objects are never collected)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def _lazy_import(request: object) -> PlainTextResponse:
    importlib.import_module("xml.dom.minidom")  # a module nothing here imported before
    return PlainTextResponse("imported")


def test_startup_freezes_and_a_lazy_import_freezes_again(unfrozen: None) -> None:
    sys.modules.pop("xml.dom.minidom", None)
    app = FrozenHeap(Starlette(routes=[Route("/ok", lambda r: PlainTextResponse("ok")), Route("/lazy", _lazy_import)]))
    assert gc.get_freeze_count() == 0
    with TestClient(app) as client:  # runs the lifespan
        assert app.modules_at_freeze == len(sys.modules) and gc.get_freeze_count() > 0
        client.get("/ok")
        before = app.modules_at_freeze
        client.get("/ok")
        assert app.modules_at_freeze == before  # nothing new imported: no freeze
        client.get("/lazy")
        client.get("/ok")  # the request after the import finds more modules and freezes again
        assert app.modules_at_freeze is not None and app.modules_at_freeze > before
        assert "xml.dom.minidom" in sys.modules


def test_without_a_lifespan_the_first_request_freezes(unfrozen: None) -> None:
    app = FrozenHeap(Starlette(routes=[Route("/ok", lambda r: PlainTextResponse("ok"))]))
    client = TestClient(app)  # no context manager: no lifespan events
    assert app.modules_at_freeze is None
    assert client.get("/ok").text == "ok"
    assert app.modules_at_freeze == len(sys.modules) and gc.get_freeze_count() > 0


def test_the_servers_run_the_app_with_a_frozen_heap() -> None:
    from api.main import create_app, serving_app

    assert any(m.cls is FrozenHeap for m in serving_app().user_middleware)
    assert not any(m.cls is FrozenHeap for m in create_app().user_middleware)

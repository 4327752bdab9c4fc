"""Application factory: builds the FastAPI app with its routers, middleware and error handlers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI

from api.errors import install_error_handlers
from api.heap import FrozenHeap
from api.metrics import ApiMetrics
from api.middleware import BodyGuard, RequestMetrics
from api.openapi_errors import document_errors
from api.routes import (
    catalog,
    dashboard,
    datasets,
    estimates,
    evaluations,
    health,
    job_logs,
    jobs,
    keys,
    models,
    notify,
)
from service.dataset_validation import DatasetValidator
from service.db import make_engine, read_session_factory, session_factory
from service.queue import CeleryEnqueuer, Enqueuer
from service.settings import Settings, get_settings

_logger = logging.getLogger(__name__)
DESCRIPTION = """Distillation as a service: Generalizable Knowledge Distillation (CVPR 2026).

Authenticate with `Authorization: Bearer <key>` (create one with `gkd keys create --team NAME`).
Errors are `application/problem+json` (RFC 9457); validation problems list each field and its fix.
"""


def create_app(settings: Settings | None = None, *, enqueuer: Enqueuer | None = None) -> FastAPI:
    """Build the API application (no torch import; the engine connects lazily on first use)."""
    settings = settings or get_settings()
    app = FastAPI(title="GKD Distill", version="0.1.0", description=DESCRIPTION, lifespan=_lifespan)
    engine = make_engine(settings)
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory(engine)
    app.state.read_session_factory = read_session_factory(engine)
    app.state.enqueuer = enqueuer or CeleryEnqueuer(settings)
    app.state.store = None  # the ArtifactStore, built from settings on first use (api.deps.get_store)
    app.state.metrics = ApiMetrics()
    app.state.dataset_validator = DatasetValidator(settings, app.state.session_factory)
    templates: list[str] = []
    routers = (estimates, jobs, job_logs, evaluations, datasets, models, catalog, keys, notify, health, dashboard)
    for module in routers:
        document_errors(module.router)
        app.include_router(module.router)
        templates += [route.path for route in module.router.routes if isinstance(getattr(route, "path", None), str)]
    install_error_handlers(app)
    app.add_middleware(BodyGuard, max_bytes=settings.max_request_bytes)
    app.add_middleware(RequestMetrics, metrics=app.state.metrics, templates=templates)
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """At start, validate again the datasets a stopped process left ``validating``; at exit, stop the pool."""
    validator: DatasetValidator = app.state.dataset_validator
    try:
        await anyio.to_thread.run_sync(validator.resume)
    except Exception:  # an unreachable or unmigrated database must not stop the API from serving
        _logger.exception("could not resume unfinished dataset validations")
    try:
        yield
    finally:
        validator.shutdown()


def serving_app() -> FastAPI:
    """The app as the servers run it (``python -m api``, ``gkd serve``): :func:`create_app` with its heap
    frozen after start-up (api/heap.py), which takes full garbage collections off the latency tail.

    Tests build :func:`create_app` instead: freezing the test process would keep every test's cyclic
    garbage for the rest of the run.
    """
    app = create_app()
    app.add_middleware(FrozenHeap)
    return app

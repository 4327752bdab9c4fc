"""Liveness (no dependencies touched), readiness (db, broker, storage each) and Prometheus metrics.

/healthz is public; /readyz and /metrics need an API key like every other route (they reveal
infrastructure state and job counts; Prometheus sends the key with ``authorization.credentials``).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from api.deps import CurrentKey, CurrentTeam, SessionDep, SettingsDep, get_store
from api.errors import responses
from service.errors import Forbidden
from service.ops_gauges import read_gauges
from service.settings import Settings

_logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness probe")
def healthz() -> dict[str, str]:
    """Return ok while the process serves requests."""
    return {"status": "ok"}


def _check_broker(settings: Settings) -> None:
    from kombu import Connection

    with Connection(settings.resolved_broker_url, connect_timeout=2) as connection:
        connection.ensure_connection(max_retries=1, timeout=2)


@router.get(
    "/readyz",
    summary="Readiness probe",
    description="Checks the database, the broker and the artifact store; 200 when all are ok, else 503 with each "
    "component's state.",
    responses={503: {"description": "A dependency is down"}, **responses(401)},
)
def readyz(request: Request, team: CurrentTeam, session: SessionDep, settings: SettingsDep) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["db"] = "ok"
    except Exception as exc:  # report, never raise: this endpoint exists to describe failures
        checks["db"] = f"error: {type(exc).__name__}"
    try:
        _check_broker(settings)
        checks["broker"] = "ok"
    except Exception as exc:
        checks["broker"] = f"error: {type(exc).__name__}: {exc}"[:300]
    try:
        get_store(request).check()
        checks["storage"] = "ok"
    except Exception as exc:
        checks["storage"] = f"error: {type(exc).__name__}: {exc}"[:300]
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    description="For operators (an admin key: the figures cover every team): jobs and evaluations by state, "
    "queue depth and the oldest queued job's wait per queue, live workers and their slots per queue, datasets "
    "validating, notifications pending, requests by route and status, request latency histogram.",
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}, **responses(401, 403)},
)
def metrics(request: Request, key: CurrentKey, session: SessionDep, settings: SettingsDep) -> Response:
    if not key.admin:
        raise Forbidden("/metrics covers every team: scrape it with an admin key (gkd keys create --admin)")
    api_metrics = request.app.state.metrics
    gauges = read_gauges(session=session, queues=settings.queues, capacity_stale_s=settings.capacity_stale_s)
    api_metrics.set_ops(gauges)
    return Response(api_metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

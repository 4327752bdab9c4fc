"""Every route documents the problems it can answer, derived from what it depends on (one rule, not per route).

A route that takes a JSON body can answer 400 (malformed JSON), 413, 415 and 422; one that needs a key,
401; one that opens a database session, 503 when the database is unreachable; one that reads artifact
storage, 503 too. Routes keep listing their own domain answers (404, 409, ...) by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from api.deps import get_current_key, get_current_team, get_session, get_store
from api.errors import responses


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def implied_statuses(route: APIRoute) -> set[int]:
    """The error statuses a route can answer because of its body and dependencies."""
    calls = set(_calls(route.dependant))
    codes: set[int] = set()
    if route.body_field is not None:
        codes |= {400, 413, 415, 422}
    if route.dependant.path_params or route.dependant.query_params:
        codes.add(422)
    if get_current_team in calls or get_current_key in calls:
        codes.add(401)
    if get_session in calls or get_store in calls:
        codes.add(503)
    return codes


def document_errors(router: APIRouter) -> None:
    """Add the implied problem responses to every route of ``router`` (before it is included in the app)."""
    for route in router.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            for code, entry in responses(*sorted(implied_statuses(route))).items():
                route.responses.setdefault(code, entry)


def leaf_routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    """The routes that serve requests, looking inside included routers (FastAPI keeps them nested)."""
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            yield from leaf_routes(inner.routes)
        else:
            yield route

"""API keys: list and revoke (a team its own keys; an admin key every team's). Keys are created by the
operator's ``gkd keys create`` (it writes to the database: the first key cannot come over HTTP)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import CurrentKey, SessionDep
from api.errors import responses
from service import auth
from service.schemas import ApiKeyList, ApiKeyRead

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.get(
    "",
    response_model=ApiKeyList,
    summary="List API keys",
    description="The calling team's keys (prefix, created, revoked), never their secrets. An admin key sees "
    "every team's keys, or one team's with `team`.",
    responses=responses(404),
)
def list_keys(
    key: CurrentKey,
    session: SessionDep,
    team: Annotated[str | None, Query(max_length=100, description="Admin keys: only this team's keys")] = None,
) -> ApiKeyList:
    rows = auth.list_api_keys(session=session, caller=key, team=team)
    return ApiKeyList(items=[ApiKeyRead.from_key(row) for row in rows])


@router.delete(
    "/{prefix}",
    status_code=204,
    summary="Revoke an API key",
    description="Revoke a key by its prefix: it stops working at once. Revoking a revoked key changes nothing "
    "(204 again). A team may revoke its own keys, an admin key any key; another team's key is a 404.",
    responses=responses(404),
)
def revoke_key(prefix: str, key: CurrentKey, session: SessionDep) -> Response:
    auth.revoke_api_key(session=session, prefix=prefix, caller=key)
    session.commit()
    return Response(status_code=204)

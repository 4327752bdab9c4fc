"""The team's notification signing secret: rotate it and see it once (docs/NOTIFICATIONS.md)."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import CurrentTeam, SessionDep, SettingsDep
from service.notify import signing
from service.notify.team_secret import rotate_secret

router = APIRouter(prefix="/v1/notify-secret", tags=["notifications"])


class NotifySecretCreated(BaseModel):
    """A new signing secret, shown only in this answer."""

    secret: str = Field(description="HMAC-SHA256 key for the signature header; store it with the receiver")
    header: str = Field(description="The request header that carries the signature")
    created_at: datetime


@router.post(
    "",
    status_code=201,
    response_model=NotifySecretCreated,
    summary="Rotate the notification signing secret",
    description="Create the team's webhook signing secret, or replace it: the old one stops signing at once, "
    "including retries of notifications already queued. The secret is shown in this answer only. Receivers "
    f'verify `{signing.HEADER}: t=<unix>,v1=<hex>` = HMAC-SHA256(secret, "<t>.<body>") '
    "(`gkd_client.verify_signature`).",
)
def rotate_notify_secret(team: CurrentTeam, session: SessionDep, settings: SettingsDep) -> NotifySecretCreated:
    secret, row = rotate_secret(session=session, team_id=team.id, server_key=settings.secret_key)
    session.commit()
    return NotifySecretCreated(secret=secret, header=signing.HEADER, created_at=row.created_at)

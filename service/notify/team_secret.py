"""Each team's webhook signing secret: rotated (and shown) once, recoverable only with the server key.

The deliverer must sign with the secret itself, so it cannot be stored hashed as API keys are. Instead the
row keeps a random nonce and the secret is derived when needed:
``whsec_`` + base64url(HMAC-SHA256(GKD_SECRET_KEY, "gkd-notify-secret:v1:<team id>:<nonce>")).
A database copy without the server key signs nothing; a changed GKD_SECRET_KEY is detected by the stored
``check`` digest, and the deliverer then abandons deliveries with a message telling the team to rotate.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.models import NotifySecret, utcnow

PREFIX = "whsec_"


class SecretUnavailable(LookupError):
    """The team has no usable signing secret (never rotated, or the server key changed since)."""


def _derive(server_key: str, team_id: str, nonce: str) -> str:
    info = f"gkd-notify-secret:v1:{team_id}:{nonce}".encode()
    digest = hmac.new(server_key.encode(), info, hashlib.sha256).digest()
    return PREFIX + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _check(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def rotate_secret(*, session: Session, team_id: str, server_key: str) -> tuple[str, NotifySecret]:
    """Give the team a new secret (the old one stops signing at once); returns it, to be shown once."""
    nonce = secrets.token_hex(32)
    secret = _derive(server_key, team_id, nonce)
    row = session.get(NotifySecret, team_id)
    if row is None:
        row = NotifySecret(team_id=team_id)
        session.add(row)
    row.nonce, row.check, row.created_at = nonce, _check(secret), utcnow()
    session.flush()
    return secret, row


def has_secret(*, session: Session, team_id: str) -> bool:
    """Whether the team has rotated a secret (a job asking for notifications needs one)."""
    return session.scalar(select(NotifySecret.team_id).where(NotifySecret.team_id == team_id)) is not None


def signing_secret(*, session: Session, team_id: str, server_key: str) -> str:
    """The team's current secret, for signing.

    Raises:
        SecretUnavailable: no secret yet, or GKD_SECRET_KEY changed since it was rotated.
    """
    row = session.get(NotifySecret, team_id)
    if row is None:
        raise SecretUnavailable("the team has no notification signing secret; create one: gkd notify-secret rotate")
    secret = _derive(server_key, team_id, row.nonce)
    if not hmac.compare_digest(_check(secret), row.check):
        raise SecretUnavailable(
            "the server's GKD_SECRET_KEY changed since the signing secret was created, so it cannot be "
            "recovered; rotate it (gkd notify-secret rotate) and update the receiver"
        )
    return secret

"""Teams and API keys: keys are random, shown once, and stored only as a SHA-256 hash.

A key reads ``gkd_<prefix>_<secret>``; the prefix finds the row, the hash of the whole key is
compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from service.errors import NotFound, Unauthorized, ValidationFailed, field_error
from service.models import ApiKey, Team, utcnow

_KEY = re.compile(r"^gkd_([0-9a-f]{12})_([A-Za-z0-9_\-]{20,})$")
_TEAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


def hash_key(key: str) -> str:
    """SHA-256 hex digest of the full key (keys carry 256 bits of entropy; no slow hash is needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def get_or_create_team(*, session: Session, name: str) -> Team:
    """The team with this name, created if new."""
    if not _TEAM.match(name):
        raise ValidationFailed(
            [field_error("team", f"invalid team name {name!r}", "use letters, digits, '_', '-', '.' (max 100)")]
        )
    team = session.scalar(select(Team).where(Team.name == name))
    if team is None:
        team = Team(name=name, created_at=utcnow())
        session.add(team)
        session.flush()
    return team


def team_name(*, session: Session, team_id: str) -> str | None:
    """The team's name (what ``{team}`` in a configured data root or bucket stands for), None if unknown."""
    return session.scalar(select(Team.name).where(Team.id == team_id))


def create_api_key(*, session: Session, team_name: str, admin: bool = False) -> tuple[str, ApiKey]:
    """Create a key for the team (and the team if new). Returns the plain key, which is never stored."""
    team = get_or_create_team(session=session, name=team_name)
    prefix = secrets.token_hex(6)
    key = f"gkd_{prefix}_{secrets.token_urlsafe(32)}"
    row = ApiKey(team_id=team.id, prefix=prefix, key_hash=hash_key(key), created_at=utcnow(), admin=admin)
    session.add(row)
    session.flush()
    return key, row


def authenticate(*, session: Session, key: str | None) -> Team:
    """The team that owns ``key``; Unauthorized for a missing, malformed, unknown or revoked key."""
    return authenticate_key(session=session, key=key).team


def authenticate_key(*, session: Session, key: str | None) -> ApiKey:
    """The key's row (with its team); Unauthorized for a missing, malformed, unknown or revoked key."""
    if not key:
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' (create one with gkd keys create)")
    match = _KEY.match(key.strip())
    if match is None:
        raise Unauthorized("malformed API key: expected gkd_<prefix>_<secret>")
    # The team comes in the same query: every authenticated request needs it.
    row = session.scalar(select(ApiKey).options(joinedload(ApiKey.team)).where(ApiKey.prefix == match.group(1)))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, hash_key(key.strip())):
        raise Unauthorized("unknown or revoked API key")
    return row


def list_api_keys(*, session: Session, caller: ApiKey, team: str | None = None) -> list[ApiKey]:
    """Keys the caller may see, oldest first: its own team's, or (admin keys) every team's or ``team``'s."""
    query = select(ApiKey).join(Team).order_by(ApiKey.created_at, ApiKey.prefix)
    if not caller.admin:
        if team is not None and team != caller.team.name:
            raise NotFound(f"no team {team[:100]!r}")
        return list(session.scalars(query.where(ApiKey.team_id == caller.team_id)))
    if team is not None:
        query = query.where(Team.name == team)
    return list(session.scalars(query))


def revoke_api_key(*, session: Session, prefix: str, caller: ApiKey | None = None) -> ApiKey:
    """Revoke a key by its prefix; it stops working at once. Revoking a revoked key changes nothing.

    ``caller`` (None: the operator's own command line) may revoke its own team's keys, or any key if admin;
    another team's key reads as missing (NotFound), as every other resource does.
    """
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None or (caller is not None and not caller.admin and row.team_id != caller.team_id):
        raise NotFound(f"no API key with prefix {prefix[:32]!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row

"""Opaque, tamper-proof page tokens for keyset pagination (created_at desc, id desc).

A token is base64url(JSON) + "." + HMAC-SHA256 over it, keyed by Settings.secret_key. It also
carries a digest of the listing's filters, so a token cannot be replayed against another filter.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from service.errors import InvalidPageToken


@dataclass(frozen=True)
class Cursor:
    """The last row of the previous page."""

    created_at: datetime
    id: str


def filters_digest(filters: dict[str, Any]) -> str:
    """A short stable digest of the listing's filters."""
    canonical = json.dumps(filters, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _sign(payload: bytes, secret: str) -> str:
    digest = hmac.new(secret.encode(), payload, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def encode_token(cursor: Cursor, *, filters: dict[str, Any], secret: str) -> str:
    """Build the token that continues after ``cursor``."""
    body = {"c": cursor.created_at.isoformat(), "i": cursor.id, "f": filters_digest(filters)}
    payload = base64.urlsafe_b64encode(json.dumps(body, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{payload}.{_sign(payload.encode(), secret)}"


def decode_token(token: str, *, filters: dict[str, Any], secret: str) -> Cursor:
    """Check the signature and the filters, and return the cursor; InvalidPageToken otherwise."""
    payload, _, signature = token.partition(".")
    if not payload or not signature or not hmac.compare_digest(signature, _sign(payload.encode(), secret)):
        raise InvalidPageToken("page_token is not valid: pass back next_page_token unchanged")
    try:
        body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        cursor = Cursor(created_at=datetime.fromisoformat(body["c"]), id=str(body["i"]))
        digest = body["f"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidPageToken("page_token is not valid: pass back next_page_token unchanged") from exc
    if digest != filters_digest(filters):
        raise InvalidPageToken("page_token belongs to a listing with other filters; start again without a token")
    return cursor

"""The ``GKD-Signature`` header: HMAC-SHA256 over ``"<timestamp>.<body>"`` with the team's secret.

``GKD-Signature: t=<unix seconds>,v1=<hex digest>``. The timestamp is inside the signed bytes, so a
receiver that rejects signatures older than a few minutes cannot be fed a replayed request with a fresh
``t``. ``v1`` names the scheme so a later one can be added beside it. The receiving side is
``gkd_client.verify_signature`` (a separate implementation, so tests check one against the other).
"""

from __future__ import annotations

import hashlib
import hmac

HEADER = "GKD-Signature"
SCHEME = "v1"


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``b"<timestamp>." + body`` under ``secret``."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    """The header value for one delivery attempt."""
    return f"t={int(timestamp)},{SCHEME}={signature(secret, timestamp, body)}"

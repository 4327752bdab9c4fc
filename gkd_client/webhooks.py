"""Check a job notification's ``GKD-Signature`` header on the receiving side.

The server signs ``b"<t>." + body`` with HMAC-SHA256 under the team's secret and sends
``GKD-Signature: t=<unix seconds>,v1=<hex>``. Verify the raw request body (before any JSON parsing: a
re-encoded body has other bytes) and reject old timestamps, so a captured request cannot be replayed::

    from gkd_client import SignatureError, verify_signature

    try:
        verify_signature(secret, request.headers.get("GKD-Signature"), raw_body)
    except SignatureError:
        return 400
"""

from __future__ import annotations

import hashlib
import hmac
import time

from gkd_client.errors import ClientError

SIGNATURE_HEADER = "GKD-Signature"
DEFAULT_TOLERANCE_S = 300.0


class SignatureError(ClientError):
    """The signature header is missing, malformed, too old or does not match the body."""


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check that ``body`` was signed with ``secret`` within ``tolerance_s`` seconds of ``now``.

    Args:
        secret: the team's signing secret (``gkd notify-secret rotate`` printed it once).
        header: the value of the ``GKD-Signature`` request header.
        body: the raw request body.
        tolerance_s: the largest accepted difference between the signed time and ``now``.
        now: the current Unix time (default: the clock).

    Returns:
        The signed timestamp.

    Raises:
        SignatureError: naming what failed; the comparison itself is constant-time.
    """
    if not header:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER} header: {part.strip()!r} is not key=value")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                raise SignatureError(f"malformed {SIGNATURE_HEADER} header: t={value!r} is not a number") from None
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: it needs t=<unix> and v1=<hex>")
    age = (time.time() if now is None else now) - timestamp
    if abs(age) > tolerance_s:
        raise SignatureError(f"signature time is {age:+.0f} s from now, outside the {tolerance_s:g} s tolerance")
    expected = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    # Check every v1 value without stopping early, so timing says nothing about which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("signature does not match the body (wrong secret, or the body was changed)")
    return timestamp

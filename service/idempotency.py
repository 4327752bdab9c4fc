"""Idempotency-Key support: a canonical hash of the request body, compared on replays."""

from __future__ import annotations

import hashlib
import json
from typing import Any

MAX_KEY_LENGTH = 255


def request_hash(body: dict[str, Any]) -> str:
    """SHA-256 of the body as canonical JSON, so key order and whitespace do not matter."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()

"""Liveness: answers without touching the database, broker or storage."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness probe")
def healthz() -> dict[str, str]:
    """Return ok while the process serves requests."""
    return {"status": "ok"}

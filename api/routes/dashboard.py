"""The team dashboard: static HTML, CSS and JavaScript over the same REST API."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
router = APIRouter(tags=["dashboard"])


@router.get("/dashboard", include_in_schema=False)
def dashboard() -> FileResponse:
    """Serve the dashboard's single page; it asks for an API key and calls /v1 itself."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

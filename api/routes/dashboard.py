"""The team dashboard: static HTML, CSS and JavaScript over the same REST API.

The files are written by hand in api/static (no build step, no third-party front-end code); the
page asks for an API key and calls /v1 itself, so these routes need no authentication.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
router = APIRouter(tags=["dashboard"])

# The page holds an API key in localStorage: forbid framing and foreign scripts.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@router.get("/dashboard", include_in_schema=False)
def dashboard() -> FileResponse:
    """Serve the dashboard's single page; it asks for an API key and calls /v1 itself."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_HEADERS)


@router.get("/dashboard/{asset}", include_in_schema=False)
def dashboard_asset(asset: str) -> FileResponse:
    """Serve the page's script and stylesheet (only the named files, never a path)."""
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no dashboard asset {asset!r}")
    return FileResponse(STATIC_DIR / asset, media_type=media_type, headers=_HEADERS)

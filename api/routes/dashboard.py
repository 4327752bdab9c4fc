"""The team dashboard: static HTML, CSS and JavaScript over the same REST API.

The files are written by hand in api/static (no build step, no third-party front-end code); the
page asks for an API key and calls /v1 itself, so these routes need no authentication.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse

from api.deps import get_store
from service.storage import StorageError

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}
router = APIRouter(tags=["dashboard"])

# The page holds an API key in localStorage: forbid framing and foreign scripts. Images may also come
# from the object store's presigned URLs (the report chart), whose origin is added per store.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{images}; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]+)?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]+)?")


def storage_origin(request: Request) -> str | None:
    """The origin presigned artifact URLs point to (read off a URL signed for the purpose, no request sent);
    None for a store without URLs, one that cannot be opened, or an origin a CSP could not carry."""
    try:
        url = get_store(request).presigned_url("dashboard/origin-probe", 60)
    except StorageError:
        return None
    if url is None:
        return None
    parts = urlsplit(url)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if _ORIGIN.fullmatch(origin) else None


def _headers(request: Request) -> dict[str, str]:
    origin = storage_origin(request)
    return {"Content-Security-Policy": _CSP.format(images=f" {origin}" if origin else ""), **_HEADERS}


@router.get("/dashboard", include_in_schema=False)
def dashboard(request: Request) -> FileResponse:
    """Serve the dashboard's single page; it asks for an API key and calls /v1 itself."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers=_headers(request))


@router.get("/dashboard/{asset}", include_in_schema=False)
def dashboard_asset(asset: str, request: Request) -> FileResponse:
    """Serve the page's script and stylesheet (only the named files, never a path)."""
    media_type = ASSETS.get(asset)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no dashboard asset {asset!r}")
    return FileResponse(STATIC_DIR / asset, media_type=media_type, headers=_headers(request))

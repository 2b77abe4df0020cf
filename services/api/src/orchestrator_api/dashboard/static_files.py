"""The dashboard's own scripts and styles (htmx vendored; nothing from another origin)."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response

from orchestrator_api.dashboard.web import PACKAGE, PREFIX

router = APIRouter(prefix=PREFIX)

#: Every file served, by name, with its media type (nothing else under static/ is reachable).
FILES: Final = {
    "htmx.min.js": "text/javascript",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
    "favicon.svg": "image/svg+xml",
}


@router.get("/static/{name}")
async def static(name: str) -> Response:
    media_type = FILES.get(name)
    if media_type is None:
        return Response("not found", status_code=404, media_type="text/plain")
    return FileResponse(
        PACKAGE / "static" / name,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )

"""The web page at `/`: static files only (HTML, CSS, JS); everything it shows comes from the API.

A strict Content-Security-Policy goes with every file: scripts, styles and requests from this origin
only, image previews from `blob:` URLs, and no framing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

WEB = Path(__file__).resolve().parent.parent / "web"
FILES = {p.name: p for p in WEB.iterdir() if p.suffix in {".html", ".css", ".js"}}
MEDIA_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "img-src 'self' blob:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _file(name: str) -> FileResponse:
    path = FILES.get(name)
    if path is None:
        raise HTTPException(404, f"no file {name!r}")
    media_type = MEDIA_TYPES[path.suffix] + "; charset=utf-8"
    return FileResponse(path, media_type=media_type, headers=HEADERS)


@router.get("/")
async def index() -> FileResponse:
    return _file("index.html")


@router.get("/web/{name}")
async def asset(name: str) -> FileResponse:
    return _file(name)

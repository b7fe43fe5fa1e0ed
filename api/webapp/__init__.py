"""The web app: a page to sign in, list and join meetings, speak in a meeting room, review and search.

Plain ES modules served from this package (``static/``), no build step and nothing from another origin, so
a deployment without internet access has the whole app and the strict Content-Security-Policy
(``stack.security_headers``: scripts from this origin only, no inline script) holds. Every page path
answers the same shell (``index.html``); ``main.js`` routes on ``location.pathname`` and reads everything
else through the REST API and the WebSockets, with the session cookie. The pages add no data route of
their own, so the authorization test's rows for them are "public": the shell holds nothing private.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).parent / "static"
ASSETS_PATH = "/app"
MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}
# The shell is fetched again on every visit so a new release takes effect; assets revalidate by ETag.
NO_CACHE = {"Cache-Control": "no-cache"}

router = APIRouter(include_in_schema=False)


def asset_names() -> frozenset[str]:
    """The files a page may load: exactly what ``static/`` holds (a name from the URL is only looked up)."""
    return frozenset(p.name for p in STATIC.iterdir() if p.is_file() and p.suffix in MEDIA_TYPES)


ASSETS = asset_names()


def _shell() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8", headers=NO_CACHE)


@router.get("/")
async def home() -> FileResponse:
    """My meetings, or the sign-in page for a visitor (the page decides, from ``GET /v1/me``)."""
    return _shell()


@router.get("/signin")
async def sign_in_page() -> FileResponse:
    return _shell()


@router.get("/register")
async def register_page() -> FileResponse:
    return _shell()


@router.get("/join")
async def join_page() -> FileResponse:
    """An invite link: ``/join#<token>``; the token stays in the fragment, which no request carries."""
    return _shell()


@router.get("/search")
async def search_page() -> FileResponse:
    return _shell()


@router.get("/meetings/{meeting_id}")
async def room_page(meeting_id: str) -> FileResponse:
    return _shell()


@router.get("/meetings/{meeting_id}/review")
async def review_page(meeting_id: str) -> FileResponse:
    return _shell()


@router.get(f"{ASSETS_PATH}/{{name}}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail="Not Found")
    path = STATIC / name
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)

"""The web app: a page to sign in, list and join meetings, speak in a meeting room, review and search.

Plain ES modules served from this package (``static/``), no build step and nothing from another origin, so
a deployment without internet access has the whole app and the strict Content-Security-Policy
(``stack.security_headers``: scripts from this origin only, no inline script) holds. Every page path
answers the same shell (``index.html``); ``main.js`` routes on ``location.pathname`` and reads everything
else through the REST API and the WebSockets, with the session cookie. The pages add no data route of
their own, so the authorization test's rows for them are "public": the shell holds nothing private.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse

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


SHELL = (STATIC / "index.html").read_text()


def shell_page(picture_origins: tuple[str, ...]) -> str:
    """The shell, telling the page which origins its policy lets profile pictures come from (the page shows
    initials for any other, rather than a picture the browser would refuse)."""
    return SHELL.replace("{picture_origins}", html.escape(" ".join(picture_origins), quote=True))


def _shell(request: Request) -> HTMLResponse:
    settings = getattr(request.app.state, "settings", None)  # set by the app's lifespan
    return HTMLResponse(shell_page(settings.picture_origins if settings else ()), headers=NO_CACHE)


# Every page is the shell; main.js draws the one its path names. An invite link is ``/join#<token>``: the
# token stays in the fragment, which no request carries. ``/`` is my meetings, or the sign-in page for a
# visitor (the page decides, from ``GET /v1/me``).
PAGES = ("/", "/signin", "/register", "/join", "/search", "/meetings/{meeting_id}", "/meetings/{meeting_id}/review")


async def page(request: Request) -> HTMLResponse:
    return _shell(request)


for path in PAGES:
    router.add_api_route(path, page, methods=["GET"])


@router.get(f"{ASSETS_PATH}/{{name}}")
async def asset(name: str) -> FileResponse:
    if name not in ASSETS:
        raise HTTPException(status_code=404, detail="Not Found")
    path = STATIC / name
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=NO_CACHE)

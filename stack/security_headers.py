"""Security headers on every HTTP response of the web process: pages, JSON, errors, ``/metrics``.

- ``Content-Security-Policy``: scripts, styles, fonts, media and fetches from the page's own origin only (no
  inline script, no third-party origin; images may also be ``data:``/``blob:`` URLs, and profile pictures
  come from the origins of ``PALAVER_PICTURE_ORIGINS``), no plugins, no
  ``<base>``, forms post only here, and no page may frame ours (``frame-ancestors 'none'``). ``connect-src``
  names the ``ws:``/``wss:`` origin of the request's own host besides ``'self'``, for browsers that do not
  count a WebSocket to the same host as ``'self'``.
- ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` (what ``frame-ancestors`` says, for old
  browsers), ``Permissions-Policy`` (the microphone for this origin only; no camera, no location).
- ``Referrer-Policy: strict-origin-when-cross-origin``: another site learns at most our origin, never a path
  or query (meeting ids, share links); a downgrade to http sends nothing. Not ``no-referrer``: under it a
  browser sends ``Origin: null`` on our own same-origin POSTs, which would blind a CSRF check by ``Origin``.
- ``Strict-Transport-Security`` only on a response to a request that came over HTTPS (uvicorn's scheme:
  TLS served here, or ``X-Forwarded-Proto`` from a trusted proxy), as RFC 6797 asks.

A header a response sets itself is kept: the API docs page sets its own policy, which differs only in
``style-src``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HSTS = "max-age=31536000"
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(?::\d{1,5})?$")  # nothing else may enter the policy
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")  # a Host header fit for a policy


def content_security_policy(host: str | None = None, https: bool = False, style_src: str = "'self'",
                            picture_origins: tuple[str, ...] = ()) -> str:
    """The policy; ``host`` (the request's Host header, used only when it is a plain host[:port]) adds its
    WebSocket origin to ``connect-src``; ``picture_origins`` (``PALAVER_PICTURE_ORIGINS``, plain origins
    only) are added to ``img-src`` for profile pictures."""
    connect = "'self'"
    if host and _HOST.match(host):
        connect += f" {'wss' if https else 'ws'}://{host}"
    return "; ".join([
        "default-src 'self'",
        "script-src 'self'",
        f"style-src {style_src}",
        " ".join(["img-src 'self' data: blob:", *(o for o in picture_origins if _ORIGIN.match(o))]),
        f"connect-src {connect}",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ])  # fmt: skip


def security_headers(host: str | None, https: bool, picture_origins: tuple[str, ...] = ()) -> dict[str, str]:
    """Every header this module sets on a response to a request for ``host``, over HTTPS or not."""
    headers = {
        "content-security-policy": content_security_policy(host, https, picture_origins=picture_origins),
        "x-content-type-options": "nosniff",
        "x-frame-options": "DENY",
        "referrer-policy": "strict-origin-when-cross-origin",
        "permissions-policy": "microphone=(self), camera=(), geolocation=()",
    }
    if https:
        headers["strict-transport-security"] = HSTS
    return headers


class SecurityHeaders:
    """ASGI middleware adding ``security_headers`` to every HTTP response of ``app`` (WebSockets pass)."""

    def __init__(self, app: ASGIApp, picture_origins: tuple[str, ...] = ()):
        self.app = app
        self.picture_origins = picture_origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None)
        added = security_headers(host, scope.get("scheme") == "https", self.picture_origins)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {k.lower() for k, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in added.items() if k.encode() not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, picture_origins: tuple[str, ...] = ()) -> None:
    """Wrap ``app``'s whole middleware stack in ``SecurityHeaders``. Not ``app.add_middleware``: Starlette
    puts its ``ServerErrorMiddleware`` outside every added middleware, so a 500 would go out bare."""
    build = app.build_middleware_stack

    def build_with_headers() -> ASGIApp:
        return SecurityHeaders(build(), picture_origins)

    app.build_middleware_stack = build_with_headers  # type: ignore[method-assign]

"""Error answers the whole web app shares: the 405's ``Allow`` header.

Why the framework's own ``Allow`` is wrong: each method of a path is a route of its own (``GET`` and
``POST /v1/meetings/{m}/chat`` come from two decorators), and Starlette answers an unsupported method
with the methods of the first route whose path matched, not of all of them. So ``DELETE .../chat``
was told ``Allow: POST`` although ``GET`` works too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

try:  # FastAPI >= 0.130 keeps an included router's routes inside it: walk them in their context
    from fastapi.routing import iter_route_contexts as _routes_in
except ImportError:  # older FastAPI copies them onto the app

    def _routes_in(routes: Iterable[Any]) -> Iterable[Any]:
        return routes


def allowed_methods(routes: Iterable[BaseRoute], scope: dict[str, Any]) -> list[str]:
    """Every method some HTTP route of ``routes`` answers at the scope's path, sorted."""
    methods: set[str] = set()
    for route in _routes_in(list(routes)):
        if getattr(route, "methods", None) and route.matches(scope)[0] is not Match.NONE:
            methods |= route.methods
    return sorted(methods)


async def http_error(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to an ``HTTPException``; a 405 lists all the path's methods in ``Allow``."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        allow = allowed_methods(request.app.routes, request.scope)
        if allow:
            exc = HTTPException(405, exc.detail, headers={**(exc.headers or {}), "Allow": ", ".join(allow)})
    return await http_exception_handler(request, exc)

"""The error responses a route declares in the OpenAPI document, each with its body schema, so that the
document lists every status a route can answer and what that answer looks like.

A route says which it can answer: ``responses=declared(404, 409, notes={404: "no such user"})``. The
status 422 (the request does not validate) FastAPI declares by itself for every route that takes input,
with the body ``stack.web`` answers; 503 (the store is unavailable) the web app adds to every route of the
API (``stack.web``). Every error body other than 422 is ``{"detail": "<message>"}`` (``ErrorOut``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

STORE_RETRY_AFTER_S = 5  # the Retry-After of a 503 while the store is unavailable
STORE_UNAVAILABLE_DETAIL = "the store is unavailable; try again"


class ErrorOut(BaseModel):
    """Every error answer but 422: what went wrong, in words."""

    detail: str


# What each status means on this API, unless a route says more precisely (``notes``).
MEANINGS = {
    400: "The body is not readable (not UTF-8, or not what its Content-Type says)",
    401: "Not signed in, or the credential is not valid (an expired or revoked token)",
    403: "Refused",
    404: "No such resource",
    409: "Conflicts with the current state of the resource",
    413: "The body is larger than `PALAVER_MAX_REQUEST_BYTES`",
    429: "Too many attempts: try again after `Retry-After` seconds",
    503: "ClickHouse does not answer: try again after `Retry-After` seconds",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again", "schema": {"type": "integer"}}}
HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: _RETRY_AFTER,
    503: _RETRY_AFTER,
}
EXAMPLES = {503: {"detail": STORE_UNAVAILABLE_DETAIL}}


def declared(*codes: int, notes: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route answering ``codes`` besides its success and 422: each with the
    ``ErrorOut`` body, the status's meaning (or the route's own note) and its headers."""
    notes = notes or {}
    unknown = (set(codes) | set(notes)) - MEANINGS.keys()
    if unknown or not set(notes) <= set(codes):
        raise ValueError(f"declare only {sorted(MEANINGS)}, and a note only for a declared status: {codes} {notes}")
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        response: dict[str, Any] = {"model": ErrorOut, "description": notes.get(code, MEANINGS[code])}
        if code in HEADERS:
            response["headers"] = HEADERS[code]
        if code in EXAMPLES:
            response["content"] = {"application/json": {"example": EXAMPLES[code]}}
        out[code] = response
    return out

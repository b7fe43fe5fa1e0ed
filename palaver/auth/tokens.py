"""Signed, expiring tokens (pure functions; the key is passed in).

A token reads ``<payload>.<signature>``: the payload is url-safe base64 of compact JSON claims, the
signature an HMAC-SHA256 over it with a key derived from the server's secret and the token's *kind*
(``access``, ``refresh``, ``ticket``, ...), so a token of one kind is never accepted as another. Claims
always hold ``kind`` and ``exp`` (ms since the epoch); the rest is the caller's (``sub``: a user id,
``sid``: a session id, ``mtg``: a meeting id, ...).

Tokens are bearer secrets: never log one, never put one in an event. What a token may do beyond its
signature and expiry (a revoked session, a used ticket) is checked by whoever accepts it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson


class InvalidToken(Exception):
    """The token is malformed, forged, of another kind, or expired. ``reason`` is safe to show."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def kind_key(secret: bytes, kind: str) -> bytes:
    """The signing key of one kind of token."""
    return hmac.new(secret, f"palaver-token/{kind}".encode(), hashlib.sha256).digest()


def sign(secret: bytes, kind: str, claims: dict[str, Any], *, now_ms: int, ttl_ms: int) -> str:
    """A token of ``kind`` carrying ``claims``, valid until ``now_ms + ttl_ms``."""
    payload = _b64(orjson.dumps({**claims, "kind": kind, "exp": now_ms + ttl_ms}))
    signature = hmac.new(kind_key(secret, kind), payload.encode(), hashlib.sha256).digest()
    return f"{payload}.{_b64(signature)}"


def verify(secret: bytes, kind: str, token: str, *, now_ms: int) -> dict[str, Any]:
    """The claims of a valid, unexpired token of ``kind``; raises InvalidToken otherwise."""
    payload, _, signature = token.partition(".")
    if not payload or not signature or len(token) > 4096:
        raise InvalidToken("malformed token")
    expected = hmac.new(kind_key(secret, kind), payload.encode(), hashlib.sha256).digest()
    try:
        given = _unb64(signature)
    except ValueError:
        raise InvalidToken("malformed token") from None
    if not hmac.compare_digest(expected, given):
        raise InvalidToken(f"not a valid {kind} token")
    try:
        claims = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError):
        raise InvalidToken("malformed token") from None
    if not isinstance(claims, dict) or claims.get("kind") != kind or not isinstance(claims.get("exp"), int):
        raise InvalidToken("malformed token")
    if claims["exp"] <= now_ms:
        raise InvalidToken(f"the {kind} token has expired")
    return claims


def fingerprint(text: str) -> str:
    """A short, one-way digest (for example of a password hash: a token carrying it stops working when the
    password changes, without the hash itself leaving the server)."""
    return _b64(hashlib.sha256(text.encode()).digest()[:12])

"""Who is calling: a bearer access token (API clients) or a session cookie (browsers), checked on every
request; nothing else about a caller is trusted.

A sign-in is a *session* (``ses_...``). Its tokens are signed (``palaver.auth.tokens``), so any API process
verifies them without a lookup; what a signature cannot tell is checked per request: the user still exists,
its password is the one the session signed in with (a password change ends every session), and the session
was not revoked (logout). Revocations are events (``sessions`` topic): the process that logs out refuses the
session at once, the others once the store writer has the row (normally well under a second).

Browsers: the session token lives in an HttpOnly, SameSite=Lax cookie (Secure under HTTPS). A
state-changing request authenticated by that cookie must repeat the CSRF token (readable cookie
``palaver_csrf``, bound to the session) in the ``X-CSRF-Token`` header: a page of another site can make the
browser send the cookie, but cannot read the CSRF cookie to copy it.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, OAuth2PasswordBearer

from api import meeting_queries
from api.user_state import RecentWrites, UserRecord
from palaver import ids
from palaver.auth.tokens import InvalidToken, fingerprint, sign, verify
from palaver.events import SessionRevokedV1, encode

SESSION_COOKIE = "palaver_session"
CSRF_COOKIE = "palaver_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

bearer_scheme = OAuth2PasswordBearer(tokenUrl="/v1/auth/token", auto_error=False,
                                     description="An access token from POST /v1/auth/token")  # fmt: skip
cookie_scheme = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                             description=f"A browser session from POST /v1/auth/login; writes also need the "
                                         f"{CSRF_HEADER} header")  # fmt: skip

UNAUTHENTICATED = HTTPException(status_code=401, detail="sign in first", headers={"WWW-Authenticate": "Bearer"})


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    username: str
    role: str
    session_id: str
    via: Literal["bearer", "cookie", "ticket"]

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True, slots=True)
class SignIn:
    """The tokens of one session. ``session`` is the browser's cookie value, ``refresh`` an API client's."""

    session_id: str
    access: str
    refresh: str
    session: str
    csrf: str
    access_expires_in_s: int
    session_expires_at_ms: int


def start_session(secret: bytes, user: UserRecord, access_ttl_s: int, session_ttl_s: int,
                  session_id: str | None = None, session_expires_at_ms: int | None = None) -> SignIn:  # fmt: skip
    """New tokens for ``user``: a new session, or (refresh) the same one, which keeps its expiry."""
    now = now_ms()
    sid = session_id or f"ses_{secrets.token_hex(12)}"
    expires = session_expires_at_ms or now + session_ttl_s * 1000
    claims = {"sub": user.user_id, "sid": sid, "pwf": fingerprint(user.password_hash), "sxp": expires}
    left = max(1, expires - now)
    return SignIn(
        session_id=sid,
        access=sign(secret, "access", claims, now_ms=now, ttl_ms=min(access_ttl_s * 1000, left)),
        refresh=sign(secret, "refresh", claims, now_ms=now, ttl_ms=left),
        session=sign(secret, "session", claims, now_ms=now, ttl_ms=left),
        csrf=sign(secret, "csrf", {"sid": sid}, now_ms=now, ttl_ms=left),
        access_expires_in_s=min(access_ttl_s, left // 1000),
        session_expires_at_ms=expires,
    )


class Sessions:
    """This process's memory of the sessions it revoked (the store has everyone's)."""

    def __init__(self) -> None:
        self.revoked: RecentWrites[bool] = RecentWrites(ttl_s=600)

    async def is_revoked(self, request: Request, session_id: str) -> bool:
        if self.revoked.get(session_id):
            return True
        return await meeting_queries.session_revoked(request.app.state.store, session_id)

    async def revoke(self, request: Request, claims: dict[str, Any]) -> None:
        sid = claims["sid"]
        event = SessionRevokedV1(event_id=ids.event_id("session.revoked", sid), session_id=sid,
                                 user_id=claims["sub"], revoked_at_ms=now_ms(), expires_at_ms=claims["sxp"])  # fmt: skip
        await request.app.state.producer.send_and_wait(request.app.state.sessions_topic, encode(event),
                                                       key=sid.encode())  # fmt: skip
        self.revoked.put(sid, True)


async def claims_of(request: Request, kind: str, token: str) -> dict[str, Any] | None:
    """The claims of a valid token of a live session of an existing user whose password is unchanged."""
    try:
        claims = verify(request.app.state.secret, kind, token, now_ms=now_ms())
    except InvalidToken:
        return None
    user = await request.app.state.users.get(request, claims.get("sub", ""))
    if user is None or not hmac.compare_digest(fingerprint(user.password_hash), str(claims.get("pwf"))):
        return None
    if await request.app.state.sessions.is_revoked(request, claims["sid"]):
        return None
    return {**claims, "user": user}


def csrf_matches(request: Request, session_id: str) -> bool:
    header, cookie = request.headers.get(CSRF_HEADER, ""), request.cookies.get(CSRF_COOKIE, "")
    if not header or not hmac.compare_digest(header, cookie):
        return False
    try:
        claims = verify(request.app.state.secret, "csrf", header, now_ms=now_ms())
    except InvalidToken:
        return False
    return bool(claims.get("sid") == session_id)


async def authenticate(request: Request, bearer: str | None, cookie: str | None) -> Caller | None:
    """The caller, or None when the request carries no valid credential. A cookie-authenticated write
    without the matching CSRF token is refused with 403 (it may come from another site's page)."""
    if bearer:
        claims = await claims_of(request, "access", bearer)
        via: Literal["bearer", "cookie"] = "bearer"
    elif cookie:
        claims = await claims_of(request, "session", cookie)
        via = "cookie"
        if claims is not None and request.method not in SAFE_METHODS and not csrf_matches(request, claims["sid"]):
            raise HTTPException(status_code=403, detail=f"missing or wrong {CSRF_HEADER} header")
    else:
        return None
    if claims is None:
        return None
    user: UserRecord = claims["user"]
    return Caller(user.user_id, user.username, user.role, claims["sid"], via)


async def current_caller(
    request: Request,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Caller:
    """The signed-in caller; 401 for anyone else."""
    caller = await authenticate(request, bearer, cookie)
    if caller is None:
        raise UNAUTHENTICATED
    return caller


async def optional_caller(
    request: Request,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Caller | None:
    """The signed-in caller, or None for an anonymous one (registration). A credential that does not
    verify is still 401: a client that meant to sign in should hear that it is not."""
    if not bearer and not cookie:
        return None
    return await current_caller(request, bearer, cookie)


SignedIn = Annotated[Caller, Depends(current_caller)]
MaybeSignedIn = Annotated[Caller | None, Depends(optional_caller)]

"""Signing in and out: ``POST /v1/auth/token`` (OAuth2 password flow and refresh, for API clients),
``POST /v1/auth/login`` (a browser session in cookies), ``POST /v1/auth/logout``, ``GET /v1/me``.
See ``api.identity`` for what the tokens are and how each request is checked."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from pydantic import BaseModel, Field, SecretStr

from api.identity import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    SignedIn,
    SignIn,
    bearer_scheme,
    claims_of,
    cookie_scheme,
    start_session,
)
from api.passwords import verify_password
from api.rate_limit import SlidingWindowLimiter
from api.responses import declared
from api.user_state import UserRecord
from api.users import UserOut

router = APIRouter(tags=["auth"])

# A hash to verify against when the name is unknown, so an unknown name costs what a wrong password does
# and the answer's timing does not tell which names exist.
_DECOY_HASH = "scrypt$n=16384,r=8,p=5$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
ADDRESS_FACTOR = 4  # one address (an office behind NAT) may fail this many times an account's limit


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token is valid")
    refresh_token: str = Field(description="POST it with grant_type=refresh_token for a new access token")
    refresh_expires_in: int = Field(description="Seconds the session (and the refresh token) is valid")


class Login(BaseModel):
    username: str = Field(min_length=1, max_length=254, description="Username or email")
    password: SecretStr = Field(json_schema_extra={"minLength": 1, "maxLength": 1024})


class SessionOut(UserOut):
    csrf_token: str = Field(description="Send it as X-CSRF-Token with every write made with the cookie")
    session_expires_at_ms: int


class Limits:
    """Failed sign-ins of one API process, counted per account and per client address."""

    def __init__(self, max_failures: int, window_s: int):
        self.accounts = SlidingWindowLimiter(max_failures, window_s)
        self.addresses = SlidingWindowLimiter(max_failures * ADDRESS_FACTOR, window_s)


def _limits(request: Request) -> Limits:
    return request.app.state.signin_limits  # type: ignore[no-any-return]


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def check_password(request: Request, name: str, password: str) -> UserRecord:
    """The user ``name`` (a username or an email) names, when ``password`` is theirs; 401 otherwise, and
    429 with Retry-After once the account or the client's address failed too often."""
    limits = _limits(request)
    account, address = name.strip().lower(), _address(request)
    wait = max(limits.accounts.wait_s(account) or 0, limits.addresses.wait_s(address) or 0)
    if wait:
        raise HTTPException(status_code=429, detail="too many failed sign-ins; try again later",
                            headers={"Retry-After": str(wait)})  # fmt: skip
    found = await request.app.state.users.named(request, name)
    ok = await asyncio.to_thread(verify_password, password, found.password_hash if found else _DECOY_HASH)
    if found is None or not ok:
        limits.accounts.note(account)
        limits.addresses.note(address)
        raise HTTPException(status_code=401, detail="wrong username or password",
                            headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    limits.accounts.forget(account)
    return found


def _session(request: Request, user: UserRecord, **kwargs: Any) -> SignIn:
    settings = request.app.state.settings
    return start_session(request.app.state.secret, user, settings.access_token_ttl_s, settings.session_ttl_s,
                         **kwargs)  # fmt: skip


def _token_out(tokens: SignIn) -> dict[str, Any]:
    return {"access_token": tokens.access, "token_type": "bearer", "expires_in": tokens.access_expires_in_s,
            "refresh_token": tokens.refresh,
            "refresh_expires_in": max(0, (tokens.session_expires_at_ms - int(time.time() * 1000)) // 1000)}  # fmt: skip


AUTH_ERRORS = declared(400, 401, 429, notes={400: "An unreadable body, or a grant without what it needs",
                                              401: "Wrong username or password, or an invalid refresh token",
                                              429: "Too many failed sign-ins: wait `Retry-After` seconds"})


@router.post("/v1/auth/token", response_model=TokenOut, responses=AUTH_ERRORS)
async def issue_token(
    request: Request,
    grant_type: Annotated[Literal["password", "refresh_token"], Form()] = "password",
    username: Annotated[str | None, Form(max_length=254, description="Username or email")] = None,
    password: Annotated[str | None, Form(max_length=1024)] = None,
    refresh_token: Annotated[str | None, Form(max_length=4096)] = None,
) -> dict[str, Any]:
    """OAuth2 token endpoint. ``grant_type=password`` with ``username`` (or email) and ``password`` signs
    in; ``grant_type=refresh_token`` with ``refresh_token`` gives a new access token (and refresh token) of
    the same session. Send the access token as ``Authorization: Bearer <token>``."""
    if grant_type == "refresh_token":
        claims = await claims_of(request, "refresh", refresh_token or "")
        if claims is None:
            raise HTTPException(status_code=401, detail="invalid or expired refresh token",
                                headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
        tokens = _session(request, claims["user"], session_id=claims["sid"], session_expires_at_ms=claims["sxp"])
        return _token_out(tokens)
    if not username or not password:  # OAuth2's invalid_request (RFC 6749, 5.2)
        raise HTTPException(status_code=400, detail="username and password are required")
    user = await check_password(request, username, password)
    return _token_out(_session(request, user))


def _set_cookies(request: Request, response: Response, tokens: SignIn) -> None:
    secure = request.url.scheme == "https"
    max_age = max(0, (tokens.session_expires_at_ms - int(time.time() * 1000)) // 1000)
    response.set_cookie(SESSION_COOKIE, tokens.session, max_age=max_age, httponly=True, samesite="lax",
                        secure=secure, path="/")  # fmt: skip
    response.set_cookie(CSRF_COOKIE, tokens.csrf, max_age=max_age, httponly=False, samesite="lax",
                        secure=secure, path="/")  # fmt: skip


@router.post("/v1/auth/login", response_model=SessionOut, responses=AUTH_ERRORS)
async def login(request: Request, response: Response, body: Login) -> dict[str, Any]:
    """Browser sign-in: sets the HttpOnly session cookie and the CSRF cookie; the answer repeats the CSRF
    token, which every write made with the cookie sends as ``X-CSRF-Token``."""
    user = await check_password(request, body.username, body.password.get_secret_value())
    tokens = _session(request, user)
    _set_cookies(request, response, tokens)
    return {**user.public(), "csrf_token": tokens.csrf, "session_expires_at_ms": tokens.session_expires_at_ms}


@router.post("/v1/auth/logout", status_code=204, responses=declared(401, 403))
async def logout(
    request: Request,
    caller: SignedIn,
    bearer: Annotated[str | None, Depends(bearer_scheme)],
    cookie: Annotated[str | None, Depends(cookie_scheme)],
) -> Response:
    """End the caller's session: its cookie, access and refresh tokens stop working (in every API process
    within the store writer's lag), and the browser's cookies are cleared."""
    kind, token = ("access", bearer) if bearer else ("session", cookie)
    claims = await claims_of(request, kind, token or "")
    if claims is not None:
        await request.app.state.sessions.revoke(request, claims)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    response.delete_cookie(CSRF_COOKIE, path="/")
    return response


@router.get("/v1/me", response_model=UserOut, responses=declared(401))
async def me(request: Request, caller: SignedIn) -> dict[str, Any]:
    """The signed-in user."""
    user = await request.app.state.users.get(request, caller.user_id)
    if user is None:
        raise HTTPException(status_code=401, detail="sign in first")
    return user.public()

"""Who may create an account through ``POST /v1/users`` (``PALAVER_REGISTRATION``), and invite codes.

- ``open``: anyone (the default).
- ``invite``: holders of an invite code, a signed token of kind ``invite`` (``palaver.auth.tokens``) made
  by ``palaver admin invite``; it stays valid, for any number of accounts, until it expires.
- ``closed``: nobody but an admin.

Admins always may (``caller_is_admin``: the caller dependency decides who is one). Every account created
this way is a ``member``; only an admin gives roles.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from api.rate_limit import SlidingWindowLimiter
from palaver.auth.secret import load_secret
from palaver.auth.tokens import InvalidToken, sign, verify
from palaver.settings import Settings

INVITE_KIND = "invite"
DEFAULT_INVITE_TTL_HOURS = 72


@dataclass(frozen=True)
class Admission:
    """Whether a registration may go ahead; ``reason`` (safe to show) says why not."""

    allowed: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.allowed


def registration_allowed(settings: Settings, caller_is_admin: bool, invite: str | None, *, secret: bytes,
                         now_ms: int) -> Admission:  # fmt: skip
    """May this caller create an account now? ``invite``: the code the request carries (None: none)."""
    if caller_is_admin or settings.registration == "open":
        return Admission(True)
    if settings.registration == "closed":
        return Admission(False, "registration is closed: an admin creates accounts")
    if not invite:
        return Admission(False, "registration is by invitation: send the invite code in `invite`")
    try:
        verify(secret, INVITE_KIND, invite, now_ms=now_ms)
    except InvalidToken as exc:
        return Admission(False, f"invite: {exc.reason}")
    return Admission(True)


def make_invite(secret: bytes, *, now_ms: int, ttl_hours: float = DEFAULT_INVITE_TTL_HOURS) -> str:
    """A new invite code, valid for ``ttl_hours``. A bearer secret: whoever holds it may register."""
    return sign(secret, INVITE_KIND, {"jti": secrets.token_urlsafe(9)}, now_ms=now_ms, ttl_ms=int(ttl_hours * 3600_000))


class RegistrationDesk:
    """One API process's registration state: its settings, the per-address limiter, the secret (loaded on
    first use)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.per_address = SlidingWindowLimiter(settings.registrations_per_address_per_hour, 3600.0, clock)
        self._secret: bytes | None = None

    def secret(self) -> bytes:
        if self._secret is None:
            self._secret = load_secret(self.settings)
        return self._secret

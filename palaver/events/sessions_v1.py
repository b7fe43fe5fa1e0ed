"""Ended sign-ins, as events on the ``sessions`` topic (key: ``session_id``).

Sessions themselves live in signed tokens (``api/identity.py``): nothing is written when one starts. A
logout (or an admin ending someone's sessions) writes ``session.revoked``; every API process refuses the
session's tokens from then on (its own at once, the others once the store has the row).
"""

from __future__ import annotations

from typing import Literal

from palaver.events.base import EventV


class SessionRevokedV1(EventV):
    event: Literal["session.revoked"] = "session.revoked"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("session.revoked", session_id)
    session_id: str
    user_id: str
    revoked_at_ms: int
    expires_at_ms: int  # when its tokens would have expired anyway: the row may be dropped after

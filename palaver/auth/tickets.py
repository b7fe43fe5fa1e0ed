"""Single-use tickets for the audio and live WebSockets.

A ticket is a signed token (kind ``ticket``) bound to one meeting, one user and one use (``ingest`` or
``live``), valid for ``PALAVER_TICKET_TTL_S`` (60 s): what a page puts in a socket's URL instead of a
long-lived credential. ``redeem`` checks it and marks it used; a process remembers used tickets until they
expire, so a ticket opens one socket per process (a deployment with several ingest processes routes a
meeting to one of them, docs/architecture.md)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from palaver.auth.tokens import InvalidToken, verify

UNAUTHENTICATED = 4401  # no ticket, or one that is forged, expired or used
FORBIDDEN = 4403  # a valid ticket for another meeting or use, or a page from a foreign origin
NOT_FOUND = 4404  # the meeting is unknown to this user (live socket)


class TicketRefused(Exception):
    """Close the socket with ``code`` and ``reason`` before reading anything from it."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


@dataclass(frozen=True, slots=True)
class Ticket:
    meeting_id: str
    user_id: str


class UsedTickets:
    """Nonces of the tickets this process accepted, kept until each ticket would have expired."""

    def __init__(self, max_items: int = 1_000_000):
        self._expiry: OrderedDict[str, int] = OrderedDict()
        self._max = max_items

    def use(self, nonce: str, expires_ms: int, now_ms: int) -> bool:
        """Mark ``nonce`` used; False when it already was."""
        while self._expiry and (next(iter(self._expiry.values())) <= now_ms or len(self._expiry) > self._max):
            self._expiry.popitem(last=False)
        if nonce in self._expiry:
            return False
        self._expiry[nonce] = expires_ms
        return True


def redeem(secret: bytes, used: UsedTickets, ticket: str | None, meeting_id: str,
           use: Literal["ingest", "live"], now_ms: int) -> Ticket:  # fmt: skip
    """The ticket's meeting and user when ``ticket`` opens a ``use`` socket of ``meeting_id``; raises
    TicketRefused otherwise. A refused ticket is not marked used."""
    if not ticket:
        raise TicketRefused(UNAUTHENTICATED, f"a ticket is required: POST /v1/meetings/{meeting_id}/{use}-tickets")
    try:
        claims = verify(secret, "ticket", ticket, now_ms=now_ms)
    except InvalidToken as exc:
        raise TicketRefused(UNAUTHENTICATED, exc.reason) from None
    if claims.get("use") != use:
        raise TicketRefused(FORBIDDEN, f"this ticket is not for the {use} socket")
    if claims.get("mtg") != meeting_id:
        raise TicketRefused(FORBIDDEN, "this ticket is for another meeting")
    if not used.use(str(claims.get("n")), claims["exp"], now_ms):
        raise TicketRefused(UNAUTHENTICATED, "this ticket was already used; take a fresh one")
    return Ticket(meeting_id, str(claims["sub"]))

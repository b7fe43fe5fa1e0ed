"""Who opens a WebSocket of the API: the browser's session cookie or a single-use ticket, from a page of an
allowed origin. Browsers send cookies with a cross-site WebSocket handshake and no CORS rule stops it, so
the ``Origin`` check is what keeps another site's page from reading a meeting with the user's cookie."""

from __future__ import annotations

from fastapi import WebSocket

from api.access import view_of
from api.identity import SESSION_COOKIE, Caller, claims_of, now_ms
from api.meeting_state import MeetingView
from palaver.auth.tickets import FORBIDDEN, NOT_FOUND, UNAUTHENTICATED, TicketRefused, redeem


def origin_allowed(ws: WebSocket, allowed: tuple[str, ...]) -> bool:
    """No ``Origin`` (a client that is not a browser), this server's own origin, or a configured one."""
    origin = ws.headers.get("origin")
    if origin is None:
        return True
    own = f"{'https' if ws.url.scheme == 'wss' else 'http'}://{ws.headers.get('host', '')}"
    return origin.rstrip("/") in (own, *allowed)


async def socket_reader(ws: WebSocket, meeting_id: str, ticket: str | None) -> MeetingView:
    """The caller's view of the meeting when it may read it; raises TicketRefused with the close code."""
    state = ws.app.state
    if not origin_allowed(ws, state.settings.allowed_origins):
        raise TicketRefused(FORBIDDEN, "this page's origin may not open the socket (PALAVER_ALLOWED_ORIGINS)")
    if ticket is not None:
        redeemed = redeem(state.secret, state.used_tickets, ticket, meeting_id, "live", now_ms())
        user = await state.users.get(ws, redeemed.user_id)  # type: ignore[arg-type]
        if user is None:
            raise TicketRefused(UNAUTHENTICATED, "the ticket's user no longer exists")
        caller = Caller(user.user_id, user.username, user.role, "", "ticket")
    else:
        claims = await claims_of(ws, "session", ws.cookies.get(SESSION_COOKIE, ""))  # type: ignore[arg-type]
        if claims is None:
            raise TicketRefused(UNAUTHENTICATED, "sign in, or open the socket with ?ticket=")
        user = claims["user"]
        caller = Caller(user.user_id, user.username, user.role, claims["sid"], "cookie")
    view = await view_of(ws, meeting_id, caller)  # type: ignore[arg-type]
    if view is None:
        raise TicketRefused(NOT_FOUND, f"no meeting {meeting_id}")
    return view

"""Signing in and the tickets of the sockets, on the real app, broker and store: the OAuth2 password flow
with refresh and logout, browser sessions with their CSRF token, a password change ending sessions, the
sign-in rate limit, and every way a socket ticket is refused (missing, reused, expired, another meeting,
another socket) or a page of a foreign origin is."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import websockets

from palaver.auth.tokens import sign
from palaver.demo.accounts import Participant, create_meeting, sign_up
from palaver.events import StreamStartedV1, decode
from palaver.events.registry import AUDIO_FRAMES, topic_name
from palaver.streams.clients import make_consumer
from tests.integration.conftest import Web, running_web
from tests.integration.infra import Infra

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
HEADER = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}
ALLOWED_ORIGIN = "https://meet.example.com"


@pytest.fixture(scope="module")
async def web(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory
              ) -> AsyncIterator[Web]:  # fmt: skip
    async with running_web(infra, clickhouse_client, tmp_path_factory, frozenset({"api", "ingest", "store"}),
                           allowed_origins=(ALLOWED_ORIGIN,), signin_max_failures=3) as web:  # fmt: skip
        yield web


def _name() -> str:
    return f"u{uuid.uuid4().hex[:10]}"


async def _token(http: httpx.AsyncClient, username: str, password: str = PASSWORD) -> httpx.Response:
    return await http.post("/v1/auth/token", data={"grant_type": "password", "username": username,
                                                   "password": password})  # fmt: skip


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_tokens_refresh_and_logout(web: Web) -> None:
    name = _name()
    await sign_up(web.url, name, PASSWORD)
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        issued = await _token(http, name.upper())  # usernames are case-insensitive
        assert issued.status_code == 200, issued.text
        tokens = issued.json()
        assert tokens["token_type"] == "bearer" and 0 < tokens["expires_in"] <= 900
        me = await http.get("/v1/me", headers=_bearer(tokens["access_token"]))
        assert me.status_code == 200 and me.json()["username"] == name
        by_email = await _token(http, f"{name}@example.com")
        assert by_email.status_code == 200, "the email signs in too"

        refreshed = await http.post("/v1/auth/token", data={"grant_type": "refresh_token",
                                                            "refresh_token": tokens["refresh_token"]})  # fmt: skip
        assert refreshed.status_code == 200, refreshed.text
        access = refreshed.json()["access_token"]
        assert (await http.get("/v1/me", headers=_bearer(access))).status_code == 200
        # An access token is not a refresh token, nor the other way round.
        wrong_kind = await http.post("/v1/auth/token", data={"grant_type": "refresh_token",
                                                             "refresh_token": access})  # fmt: skip
        assert wrong_kind.status_code == 401
        assert (await http.get("/v1/me", headers=_bearer(tokens["refresh_token"]))).status_code == 401

        out = await http.post("/v1/auth/logout", headers=_bearer(access))
        assert out.status_code == 204
        # Every token of the session is dead: both access tokens and the refresh token.
        for token in (tokens["access_token"], access):
            assert (await http.get("/v1/me", headers=_bearer(token))).status_code == 401
        again = await http.post("/v1/auth/token", data={"grant_type": "refresh_token",
                                                        "refresh_token": tokens["refresh_token"]})  # fmt: skip
        assert again.status_code == 401
        # The other session (signed in with the email) lives on.
        assert (await http.get("/v1/me", headers=_bearer(by_email.json()["access_token"]))).status_code == 200


async def test_a_browser_session_needs_its_csrf_token_to_write(web: Web) -> None:
    name = _name()
    await sign_up(web.url, name, PASSWORD)
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        login = await http.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
        assert login.status_code == 200, login.text
        cookies = {c.split("=", 1)[0]: c.lower() for c in login.headers.get_list("set-cookie")}
        assert "httponly" in cookies["palaver_session"] and "samesite=lax" in cookies["palaver_session"]
        assert "httponly" not in cookies["palaver_csrf"], "the page reads the CSRF cookie to send it back"
        assert "secure" not in cookies["palaver_session"], "plain http on localhost: no Secure flag"
        csrf = login.json()["csrf_token"]
        assert http.cookies["palaver_csrf"] == csrf

        assert (await http.get("/v1/me")).status_code == 200, "reads need no CSRF token"
        forged = await http.post("/v1/meetings", json={"title": "from another site"})
        assert forged.status_code == 403 and "X-CSRF-Token" in forged.json()["detail"]
        wrong = await http.post("/v1/meetings", json={"title": "x"}, headers={"X-CSRF-Token": csrf[:-2] + "xx"})
        assert wrong.status_code == 403
        made = await http.post("/v1/meetings", json={"title": "Planning"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text

        out = await http.post("/v1/auth/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        session = cookies["palaver_session"]
        assert (await http.get("/v1/me")).status_code == 401, "the cookies are cleared"
        old = session.split(";")[0].split("=", 1)[1]
        replayed = await http.get("/v1/me", cookies={"palaver_session": old})
        assert replayed.status_code == 401, "a copied cookie of a logged-out session is dead"


async def test_a_password_change_ends_every_session(web: Web) -> None:
    name = _name()
    person = await sign_up(web.url, name, PASSWORD)
    async with httpx.AsyncClient(base_url=web.url, timeout=30, headers=_bearer(person.access_token)) as http:
        other = (await _token(http, name)).json()["access_token"]
        changed = await http.patch(f"/v1/users/{person.user_id}",
                                   json={"password": "a whole new one", "current_password": PASSWORD})  # fmt: skip
        assert changed.status_code == 200, changed.text
        for token in (person.access_token, other):
            assert (await http.get("/v1/me", headers=_bearer(token))).status_code == 401
        fresh = await _token(http, name, "a whole new one")
        assert fresh.status_code == 200


async def test_failed_sign_ins_are_limited_per_account(web: Web) -> None:
    name = _name()
    await sign_up(web.url, name, PASSWORD)
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        for _ in range(3):  # signin_max_failures
            assert (await _token(http, name, "not it")).status_code == 401
        limited = await _token(http, name, PASSWORD)
        assert limited.status_code == 429, "even the right password waits once the account is limited"
        assert 0 < int(limited.headers["Retry-After"]) <= 300
        unknown = await _token(http, "nobody-at-all", "not it")
        assert unknown.status_code == 401 and unknown.json() == {"detail": "wrong username or password"}


async def _meeting(web: Web) -> tuple[Participant, str]:
    owner = await sign_up(web.url, _name(), PASSWORD)
    return owner, await create_meeting(owner, "Tickets")


async def _open(web: Web, path: str, origin: str | None = None) -> tuple[int | None, str]:
    """Open a socket and say hello; (close code, reason) when the server closed it, else (None, its first
    message, or "" when it stayed open and quiet for 2 s: a live socket of a meeting with nothing said)."""
    url = web.url.replace("http://", "ws://") + path
    async with websockets.connect(url, origin=origin) as ws:  # type: ignore[arg-type]
        try:
            if "/stream" in path:
                await ws.send(orjson.dumps(HEADER).decode())
            return None, str(await asyncio.wait_for(ws.recv(), timeout=2))
        except TimeoutError:
            return None, ""
        except websockets.ConnectionClosed:
            return ws.close_code, ws.close_reason or ""


async def test_an_ingest_ticket_opens_one_socket_of_its_meeting_for_its_user(web: Web) -> None:
    owner, meeting_id = await _meeting(web)
    _, other_meeting = await _meeting(web)
    stream = f"/v1/meetings/{meeting_id}/stream"

    assert (await _open(web, stream))[0] == 4401, "no ticket"
    assert (await _open(web, f"{stream}?ticket=not-a-ticket"))[0] == 4401, "a forged ticket"

    ticket = await owner.ticket(meeting_id)
    code, said = await _open(web, f"{stream}?ticket={ticket}")
    assert code is None and orjson.loads(said)["type"] == "ready"
    code, reason = await _open(web, f"{stream}?ticket={ticket}")
    assert (code, reason) == (4401, "this ticket was already used; take a fresh one")

    elsewhere = await owner.ticket(meeting_id)
    code, reason = await _open(web, f"/v1/meetings/{other_meeting}/stream?ticket={elsewhere}")
    assert (code, reason) == (4403, "this ticket is for another meeting")
    live = await owner.ticket(meeting_id, "live")
    code, reason = await _open(web, f"{stream}?ticket={live}")
    assert (code, reason) == (4403, "this ticket is not for the ingest socket")

    now = int(time.time() * 1000)
    expired = sign(web.app.state.secret, "ticket", {"mtg": meeting_id, "sub": owner.user_id, "use": "ingest",
                                                    "n": "x1"}, now_ms=now - 120_000, ttl_ms=60_000)  # fmt: skip
    code, reason = await _open(web, f"{stream}?ticket={expired}")
    assert (code, reason) == (4401, "the ticket token has expired")


async def test_the_stream_speaks_as_the_tickets_user(web: Web) -> None:
    """The URL cannot choose the speaker: two people streaming into one meeting are the two users."""
    owner, meeting_id = await _meeting(web)
    guest = await sign_up(web.url, _name(), PASSWORD)
    async with owner.client() as http:
        await http.post(f"/v1/meetings/{meeting_id}/participants", json={"user_id": guest.user_id})
    for person in (owner, guest):
        code, said = await _open(web, f"/v1/meetings/{meeting_id}/stream?ticket={await person.ticket(meeting_id)}")
        assert code is None, said
    started = await _stream_starts(web, meeting_id, 2)
    assert sorted(e.speaker_id for e in started) == sorted([owner.user_id, guest.user_id])


async def _stream_starts(web: Web, meeting_id: str, count: int) -> list[StreamStartedV1]:
    """The meeting's ``stream.started`` events on the audio topic (ingest's record of who streams)."""
    consumer = make_consumer(web.settings, None, topic_name(web.settings.topic_namespace, AUDIO_FRAMES.name))
    await consumer.start()
    found: list[StreamStartedV1] = []
    try:
        deadline = time.monotonic() + 30
        while len(found) < count and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    if dict(r.headers).get("event") == b"stream.started":
                        event = decode(r.value)
                        if isinstance(event, StreamStartedV1) and event.meeting_id == meeting_id:
                            found.append(event)
        return found
    finally:
        await consumer.stop()


async def test_the_live_socket_checks_the_pages_origin(web: Web) -> None:
    owner, meeting_id = await _meeting(web)
    live = f"/v1/meetings/{meeting_id}/live"
    code, reason = await _open(web, f"{live}?ticket={await owner.ticket(meeting_id, 'live')}",
                               origin="https://evil.example.net")  # fmt: skip
    assert code == 4403 and "origin" in reason
    for origin in (ALLOWED_ORIGIN, web.url, None):
        ticket = await owner.ticket(meeting_id, "live")
        code, said = await _open(web, f"{live}?ticket={ticket}", origin=origin)
        assert code is None, (origin, code, said)


async def test_a_ticket_speaks_for_its_user_only(web: Web) -> None:
    """A ticket names its user: one forged for another user does not verify, and the live socket refuses
    the ticket of a user who was removed from the meeting after taking it."""
    owner, meeting_id = await _meeting(web)
    bob = await sign_up(web.url, _name(), PASSWORD)
    async with owner.client() as http:
        await http.post(f"/v1/meetings/{meeting_id}/participants", json={"user_id": bob.user_id})
    claims = {"mtg": meeting_id, "sub": bob.user_id, "use": "ingest", "n": "forged"}
    forged = sign(b"not the server's key" * 2, "ticket", claims, now_ms=int(time.time() * 1000), ttl_ms=60_000)
    code, reason = await _open(web, f"/v1/meetings/{meeting_id}/stream?ticket={forged}")
    assert (code, reason) == (4401, "not a valid ticket token")

    ticket = await bob.ticket(meeting_id, "live")
    async with owner.client() as http:
        removed = await http.delete(f"/v1/meetings/{meeting_id}/participants/{bob.user_id}")
        assert removed.status_code == 204
    code, reason = await _open(web, f"/v1/meetings/{meeting_id}/live?ticket={ticket}")
    assert code == 4404, (code, reason)
    async with bob.client() as http:
        assert (await http.post(f"/v1/meetings/{meeting_id}/ingest-tickets")).status_code == 404

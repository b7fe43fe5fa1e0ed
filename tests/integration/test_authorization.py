"""Who may call what: every route of the API, REST and WebSocket, against every kind of caller, on the real
app, broker and store.

The matrix is generated from the app itself (the OpenAPI document and the WebSocket routes): a route with no
row in ``ROWS`` fails the test, so a new route is in this test from the day it is written. For each route:
an anonymous caller gets 401 (a socket: a 4401 close before any data); a signed-in stranger gets 404 and no
data for anything of a meeting it is not in (and another user's account); a viewer gets 403 on writes; a
participant succeeds on reads and writes, and only the owner on what manages the meeting.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import orjson
import pytest
import websockets
from fastapi import FastAPI
from starlette.routing import BaseRoute

from enrichment.insights import insights_event
from enrichment.local import LocalBackend
from enrichment.model import Dialogue, MeetingTranscript
from palaver.demo.accounts import Participant, sign_up
from palaver.events import encode
from palaver.events.registry import INSIGHTS, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_producer
from stack.web import create_app
from tests.integration.conftest import poll, running_web
from tests.integration.infra import Infra
from tests.integration.meetings import final_dialogue

pytestmark = pytest.mark.integration

Access = Literal["public", "signed_in", "self", "read", "write", "manage"]
Caller = Literal["anonymous", "stranger", "viewer", "participant", "owner"]
HEADER = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}


@dataclass
class World:
    url: str
    settings: Settings
    people: dict[str, Participant]  # owner, participant, viewer, stranger
    meeting_id: str
    dialogue_id: str


@dataclass(frozen=True)
class Row:
    """How a route is protected, and a request that succeeds for a caller who may make it. ``params``
    builds the path parameters, query (``params``) and body for a caller (it may create what the call
    consumes)."""

    access: Access
    params: Callable[[World, Caller], Awaitable[dict[str, Any]]] | None = None
    success: tuple[int, ...] = (200, 201, 202, 204)


async def _meeting(world: World, caller: Caller) -> dict[str, Any]:
    return {"meeting_id": world.meeting_id}


def _with(**fixed: Any) -> Callable[[World, Caller], Awaitable[dict[str, Any]]]:
    async def params(world: World, caller: Caller) -> dict[str, Any]:
        values = {k: (v(world) if callable(v) else v) for k, v in fixed.items()}
        return {"meeting_id": world.meeting_id, **values}

    return params


async def _self(world: World, caller: Caller) -> dict[str, Any]:
    """The caller's own account; a stranger asks for the owner's."""
    person = world.people["owner" if caller in ("stranger", "anonymous") else caller]
    return {"user_id": person.user_id}


async def _own_patch(world: World, caller: Caller) -> dict[str, Any]:
    return {**await _self(world, caller), "json": {"profile_pic_url": "https://example.com/me.png"}}


async def _disposable_user(world: World, caller: Caller) -> dict[str, Any]:
    """An account only this call deletes: the caller's own (the call is made as that new user), another's
    for anyone else."""
    person = await sign_up(world.url, f"gone-{uuid.uuid4().hex[:8]}")
    if caller != "participant":
        return {"user_id": person.user_id}
    return {"user_id": person.user_id, "as": person}


async def _new_session(world: World, caller: Caller) -> dict[str, Any]:
    """A sign-in of its own for a call that ends it (logout), so the caller's session lives on."""
    if caller == "anonymous":
        return {}
    return {"as": await sign_up(world.url, f"out-{uuid.uuid4().hex[:8]}")}


async def _invitee(world: World, caller: Caller) -> dict[str, Any]:
    """Someone new to invite (the stranger must stay a stranger)."""
    guest = await sign_up(world.url, f"invitee-{uuid.uuid4().hex[:8]}")
    return {"meeting_id": world.meeting_id, "json": {"user_id": guest.user_id, "role": "viewer"}}


async def _member_to_remove(world: World, caller: Caller) -> dict[str, Any]:
    """A fresh participant of the meeting for the owner to remove."""
    guest = await sign_up(world.url, f"guest-{uuid.uuid4().hex[:8]}")
    async with world.people["owner"].client() as http:
        await http.post(f"/v1/meetings/{world.meeting_id}/participants", json={"user_id": guest.user_id})
    return {"meeting_id": world.meeting_id, "user_id": guest.user_id}


async def _link(world: World, caller: Caller) -> dict[str, Any]:
    async with world.people["owner"].client() as http:
        link = (await http.post(f"/v1/meetings/{world.meeting_id}/links", json={"role": "viewer"})).json()
    return {"meeting_id": world.meeting_id, "link_id": link["link_id"]}


async def _join(world: World, caller: Caller) -> dict[str, Any]:
    """A link to another meeting of the owner's (joining the shared one would end the stranger's being one)."""
    meeting = await _own_meeting(world, caller)
    async with world.people["owner"].client() as http:
        link = (await http.post(f"/v1/meetings/{meeting['meeting_id']}/links", json={"role": "viewer"})).json()
    return {"json": {"token": link["token"]}}


async def _own_meeting(world: World, caller: Caller) -> dict[str, Any]:
    """A meeting of the owner's that this call may end or delete (the shared one stays)."""
    async with world.people["owner"].client() as http:
        created = (await http.post("/v1/meetings", json={"title": "to end"})).json()
        for who in ("participant", "viewer"):
            role = "viewer" if who == "viewer" else "participant"
            await http.post(f"/v1/meetings/{created['meeting_id']}/participants",
                            json={"user_id": world.people[who].user_id, "role": role})  # fmt: skip
    return {"meeting_id": created["meeting_id"]}


async def _dialogue(world: World, caller: Caller) -> dict[str, Any]:
    return {"meeting_id": world.meeting_id, "dialogue_id": world.dialogue_id}


async def _dialogue_text(world: World, caller: Caller) -> dict[str, Any]:
    return {**await _dialogue(world, caller), "json": {"text": "Corrected."}}


ROWS: dict[tuple[str, str], Row] = {
    ("GET", "/healthz"): Row("public"),
    ("GET", "/readyz"): Row("public"),
    ("GET", "/openapi.json"): Row("public"),
    ("GET", "/docs"): Row("public"),
    ("GET", "/docs/api-docs.js"): Row("public"),
    ("GET", "/docs/swagger-ui/{name}"): Row("public", _with(name="swagger-ui.css")),
    ("GET", "/metrics"): Row("public", success=(200, 307)),  # a mount: /metrics redirects to /metrics/
    # The web app's pages are one static shell and its files: they hold nothing private (the page reads the
    # meeting through the routes below, which check the caller).
    ("GET", "/"): Row("public"),
    ("GET", "/signin"): Row("public"),
    ("GET", "/register"): Row("public"),
    ("GET", "/join"): Row("public"),
    ("GET", "/search"): Row("public"),
    ("GET", "/meetings/{meeting_id}"): Row("public", _meeting),
    ("GET", "/meetings/{meeting_id}/review"): Row("public", _meeting),
    ("GET", "/app/{name}"): Row("public", _with(name="main.js")),
    ("POST", "/v1/auth/token"): Row("public", _with(form={"username": "nobody", "password": "wrong-one"}),
                                    success=(401,)),
    ("POST", "/v1/auth/login"): Row("public", _with(json={"username": "nobody", "password": "wrong-one"}),
                                    success=(401,)),
    ("POST", "/v1/users"): Row("public", _with(json=lambda w: {
        "username": f"new-{uuid.uuid4().hex[:8]}", "email": f"{uuid.uuid4().hex[:8]}@example.com",
        "password": "p" * 12})),
    ("POST", "/v1/auth/logout"): Row("signed_in", _new_session),
    ("GET", "/v1/me"): Row("signed_in"),
    ("GET", "/v1/users"): Row("signed_in"),
    ("POST", "/v1/meetings"): Row("signed_in", _with(json={"title": "Planning"})),
    ("GET", "/v1/meetings"): Row("signed_in"),
    ("GET", "/v1/search"): Row("signed_in", _with(params={"q": "hello"})),
    ("POST", "/v1/meeting-links/join"): Row("signed_in", _join),
    ("GET", "/v1/users/{user_id}"): Row("self", _self),
    ("PATCH", "/v1/users/{user_id}"): Row("self", _own_patch),
    ("DELETE", "/v1/users/{user_id}"): Row("self", _disposable_user),
    ("GET", "/v1/meetings/{meeting_id}"): Row("read", _meeting),
    ("GET", "/v1/meetings/{meeting_id}/participants"): Row("read", _meeting),
    ("GET", "/v1/meetings/{meeting_id}/dialogues"): Row("read", _meeting),
    ("GET", "/v1/meetings/{meeting_id}/transcript"): Row("read", _meeting),
    ("GET", "/v1/meetings/{meeting_id}/action-items"): Row("read", _meeting),
    ("GET", "/v1/meetings/{meeting_id}/summary"): Row("read", _meeting),
    ("GET", "/v1/meetings/{meeting_id}/insights"): Row("read", _meeting),
    ("GET", "/v1/meetings/{meeting_id}/insights/runs"): Row("read", _meeting),
    ("GET", "/v1/meetings/{meeting_id}/export"): Row("read", _with(params={"format": "markdown"})),
    ("GET", "/v1/meetings/{meeting_id}/chat"): Row("read", _meeting),
    ("GET", "/v1/meetings/{meeting_id}/runs"): Row("read", _meeting),
    ("GET", "/v1/meetings/{meeting_id}/runs/compare"): Row("read", _meeting),
    ("GET", "/v1/meetings/{meeting_id}/dialogues/{dialogue_id}/history"): Row("read", _dialogue),
    ("POST", "/v1/meetings/{meeting_id}/live-tickets"): Row("read", _meeting),
    ("POST", "/v1/meetings/{meeting_id}/leave"): Row("read", _own_meeting),
    ("POST", "/v1/meetings/{meeting_id}/ingest-tickets"): Row("write", _meeting),
    ("POST", "/v1/meetings/{meeting_id}/chat"): Row("write", _with(json={"text": "hello"})),
    ("POST", "/v1/meetings/{meeting_id}/enrichment"): Row("write", _with(json={"backend": "local"})),
    ("PUT", "/v1/meetings/{meeting_id}/dialogues/{dialogue_id}"): Row("write", _dialogue_text),
    ("DELETE", "/v1/meetings/{meeting_id}/dialogues/{dialogue_id}"): Row("write", _dialogue),
    ("POST", "/v1/meetings/{meeting_id}/dialogues/{dialogue_id}/reset"): Row("write", _dialogue),
    ("POST", "/v1/meetings/{meeting_id}/dialogues/{dialogue_id}/autocorrect"): Row("write", _dialogue),
    ("POST", "/v1/meetings/{meeting_id}/autocorrect"): Row("write", _meeting),
    ("PUT", "/v1/meetings/{meeting_id}/transcript"): Row("write", _with(json={"text": "All of it."})),
    ("DELETE", "/v1/meetings/{meeting_id}/transcript"): Row("write", _meeting),
    ("POST", "/v1/meetings/{meeting_id}/transcript/reset"): Row("write", _meeting),
    # No action item exists (no enrichment runs here): a permitted caller reaches the item lookup.
    ("PATCH", "/v1/meetings/{meeting_id}/action-items/{action_item_id}"): Row(
        "write", _with(action_item_id="act_none", json={"status": "done"}), success=(404,)),
    ("PATCH", "/v1/meetings/{meeting_id}"): Row("manage", _with(json={"title": "Renamed"})),
    ("DELETE", "/v1/meetings/{meeting_id}"): Row("manage", _own_meeting),
    ("POST", "/v1/meetings/{meeting_id}/end"): Row("manage", _own_meeting),
    ("POST", "/v1/meetings/{meeting_id}/participants"): Row("manage", _invitee),
    ("DELETE", "/v1/meetings/{meeting_id}/participants/{user_id}"): Row("manage", _member_to_remove),
    ("POST", "/v1/meetings/{meeting_id}/links"): Row("manage", _with(json={"role": "viewer"})),
    ("GET", "/v1/meetings/{meeting_id}/links"): Row("manage", _meeting),
    ("DELETE", "/v1/meetings/{meeting_id}/links/{link_id}"): Row("manage", _link),
    ("WS", "/v1/meetings/{meeting_id}/stream"): Row("write", _meeting),
    ("WS", "/v1/meetings/{meeting_id}/live"): Row("read", _meeting),
}

# Who gets what, by the route's access (None: that caller is not tried on such routes).
EXPECTED: dict[Access, dict[Caller, str | None]] = {
    "public": {"anonymous": "success"},
    "signed_in": {"anonymous": "401", "stranger": "success"},
    "self": {"anonymous": "401", "stranger": "404", "participant": "success"},
    "read": {"anonymous": "401", "stranger": "404", "viewer": "success", "participant": "success"},
    "write": {"anonymous": "401", "stranger": "404", "viewer": "403", "participant": "success"},
    "manage": {"anonymous": "401", "stranger": "404", "viewer": "403", "participant": "403", "owner": "success"},
}


async def publish_insights(settings: Settings, meeting_id: str, dialogue_id: str) -> None:
    """An enrichment's result of the meeting, as the enrichment service publishes it (a real local one)."""
    transcript = MeetingTranscript(dialogues=(Dialogue(dialogue_id=dialogue_id, speaker="participant", start_ms=0,
                                                       end_ms=1500, text="Hello there."),))  # fmt: skip
    event = insights_event(meeting_id, "whisper:tiny.en", "local", "rolling", 1, LocalBackend().enrich(transcript),
                           {}, int(time.time() * 1000))  # fmt: skip
    producer = make_producer(settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic_name(settings.topic_namespace, INSIGHTS.name), encode(event),
                                     key=meeting_id.encode())  # fmt: skip
    finally:
        await producer.stop()


def _routes(routes: list[BaseRoute]) -> list[BaseRoute]:
    out: list[BaseRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        out += _routes(inner.routes) if inner is not None else [route]
    return out


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app serves: the OpenAPI document's operations, the routes it leaves out
    (docs, mounts) and the WebSocket routes."""
    found = {(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops}
    for route in _routes(app.routes):
        kind = type(route).__name__
        if "WebSocket" in kind:
            found.add(("WS", route.path))  # type: ignore[attr-defined]
        elif kind == "Mount":
            found.add(("GET", route.path))  # type: ignore[attr-defined]
        elif kind == "Route" or not getattr(route, "include_in_schema", True):  # pages left out of the document
            found |= {(m, route.path) for m in route.methods if m != "HEAD"}  # type: ignore[attr-defined]
    return found


@pytest.fixture(scope="module")
async def world(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[World]:  # fmt: skip
    """The web services (api, ingest, store writer) in this process on fresh topics and database; four
    people and a meeting with one final dialogue in it."""
    tag = uuid.uuid4().hex[:6]
    async with running_web(infra, clickhouse_client, tmp_path_factory, frozenset({"api", "ingest", "store"})) as web:
        url, settings = web.url, web.settings
        people = {who: await sign_up(url, f"{who}-{tag}") for who in ("owner", "participant", "viewer", "stranger")}
        async with people["owner"].client() as http:
            meeting_id = (await http.post("/v1/meetings", json={"title": "Authz"})).json()["meeting_id"]
            for who in ("participant", "viewer"):
                role = "viewer" if who == "viewer" else "participant"
                added = await http.post(f"/v1/meetings/{meeting_id}/participants",
                                        json={"user_id": people[who].user_id, "role": role})  # fmt: skip
                assert added.status_code == 201, added.text
        dialogue_id = await final_dialogue(settings, meeting_id, people["participant"].user_id)
        await publish_insights(settings, meeting_id, dialogue_id)
        async with people["participant"].client() as http:
            await poll(lambda: http.get(f"/v1/meetings/{meeting_id}/transcript"), lambda r: r.status_code == 200,
                       "the transcript of the injected dialogue", timeout_s=60)  # fmt: skip
            await poll(lambda: http.get(f"/v1/meetings/{meeting_id}/summary"), lambda r: r.status_code == 200,
                       "the summary of the injected result", timeout_s=60)  # fmt: skip
        yield World(url, settings, people, meeting_id, dialogue_id)


async def _http_call(world: World, method: str, path: str, caller: Caller, row: Row) -> httpx.Response:
    params = await row.params(world, caller) if row.params else {}
    body = {k: params.pop(k) for k in ("json", "form", "params", "as") if k in params}
    person: Participant | None = body.get("as") or (None if caller == "anonymous" else world.people[caller])
    headers = {"Authorization": f"Bearer {person.access_token}"} if person else {}
    async with httpx.AsyncClient(base_url=world.url, timeout=30) as http:
        return await http.request(method, path.format(**params), json=body.get("json"), data=body.get("form"),
                                  params=body.get("params"), headers=headers)  # fmt: skip


async def _socket_call(world: World, path: str, caller: Caller) -> tuple[int | None, str]:
    """Open the socket as ``caller`` with a ticket of its own when it can get one; (close code or None
    when it stayed open and sent what it should, the first message)."""
    params = {"meeting_id": world.meeting_id}
    use = "ingest" if path.endswith("/stream") else "live"
    ticket = ""
    if caller != "anonymous":
        async with world.people[caller].client() as http:
            answer = await http.post(f"/v1/meetings/{world.meeting_id}/{use}-tickets")
        if answer.status_code != 201:
            return answer.status_code, answer.json()["detail"]
        ticket = answer.json()["ticket"]
    url = world.url.replace("http://", "ws://") + path.format(**params) + (f"?ticket={ticket}" if ticket else "")
    async with websockets.connect(url) as ws:
        try:
            if use == "ingest":
                await ws.send(orjson.dumps(HEADER).decode())
            first = await asyncio.wait_for(ws.recv(), timeout=10)
        except websockets.ConnectionClosed:
            return ws.close_code, ws.close_reason or ""
        return None, str(first)


def _check_http(expected: str, answer: httpx.Response, row: Row, what: str) -> None:
    if expected == "success":
        assert answer.status_code in row.success, f"{what}: {answer.status_code} {answer.text}"
        return
    assert answer.status_code == int(expected), f"{what}: {answer.status_code} {answer.text}"
    assert set(answer.json()) == {"detail"}, f"{what}: an error carries no data: {answer.text}"


def _check_socket(expected: str, outcome: tuple[int | None, str], what: str) -> None:
    code, said = outcome
    if expected == "success":
        assert code is None, f"{what}: closed {code} {said}"
        message = orjson.loads(said)
        # The ingest socket answers ready; the live socket's snapshot starts with the world's dialogue.
        ready = message.get("type") == "ready"
        assert ready or (message.get("type"), message.get("event")) == ("dialogue", "dialogue.update"), f"{what}: {said}"
    elif expected == "401":
        assert code == 4401, f"{what}: {code} {said}"
    else:  # a stranger's or viewer's ticket request is refused before any socket opens
        assert code == int(expected), f"{what}: {code} {said}"


def test_every_route_has_a_row() -> None:
    served = app_routes(create_app(Settings(), {"api", "ingest", "store"}))
    assert served - set(ROWS) == set(), "add a row to ROWS for each new route"
    assert set(ROWS) - served == set(), "ROWS names routes the app does not serve"


async def test_the_authorization_matrix(world: World) -> None:
    checked = 0
    for (method, path), row in ROWS.items():
        for caller, expected in EXPECTED[row.access].items():
            if expected is None:
                continue
            what = f"{caller} {method} {path}"
            if method == "WS":
                _check_socket(expected, await _socket_call(world, path, caller), what)
            else:
                _check_http(expected, await _http_call(world, method, path, caller, row), row, what)
            checked += 1
    assert checked >= len(ROWS) + 2 * sum(1 for row in ROWS.values() if row.access != "public")


async def test_each_caller_lists_its_own_meetings_with_its_role(world: World) -> None:
    roles = {}
    for who in ("owner", "participant", "viewer", "stranger"):
        async with world.people[who].client() as http:
            listed = (await http.get("/v1/meetings")).json()["meetings"]
        roles[who] = {m["meeting_id"]: m["role"] for m in listed}.get(world.meeting_id)
    assert roles == {"owner": "owner", "participant": "participant", "viewer": "viewer", "stranger": None}

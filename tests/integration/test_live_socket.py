"""The live socket (``WS /v1/meetings/{meeting_id}/live``) on the real API, broker and store: typed chat,
participant, meeting and dialogue messages (with their utterances) as they happen; what the store does not
hold yet still reaches a socket opened after it was published; a reconnect with ``resume`` and
``chat_since_ms`` gets no placed dialogue or chat message it already holds; a bad resume value closes with
4000 without using up the ticket; a deleted meeting closes its sockets with 4404.

Dialogue events are published as the merger would (no STT, no merger here): what is under test is the way
from the dialogues topic to the browser."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import websockets

from api.chat import ChatMessageOut
from palaver import ids
from palaver.demo.client import ws_url
from palaver.events import DialogueUpdateV1, DialogueUtterance
from tests.integration.conftest import Web, poll, running_web
from tests.integration.infra import Infra
from tests.integration.meetings import live_socket, open_meeting, publish_dialogues, register, username

pytestmark = pytest.mark.integration

RUN = "whisper:tiny.en"
Message = dict[str, Any]


@pytest.fixture(scope="module")
async def web(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Web]:
    """API and store writer in this process on fresh topics and a fresh database (no STT, no merger)."""
    async with running_web(infra, clickhouse_client, tmp_path_factory) as found:
        yield found


@pytest.fixture(scope="module")
async def api_only(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory
                   ) -> AsyncIterator[Web]:  # fmt: skip
    """The API without a store writer: a store that has not written the newest events yet, for good."""
    async with running_web(infra, clickhouse_client, tmp_path_factory, services=frozenset({"api"})) as found:
        yield found


def box(meeting_id: str, speaker_id: str, n: int, status: str, revision: int = 1, partial: bool = False,
        position: int | None = None, placed: bool | None = None) -> DialogueUpdateV1:  # fmt: skip
    """The ``n``-th dialogue of a speaker (one utterance, 5 s apart), as the merger would publish it
    (``placed`` by default when final)."""
    uid = ids.utterance_id(ids.stream_id(meeting_id, speaker_id), n * 5 * 16000)
    dialogue_id = ids.dialogue_id(meeting_id, uid)
    start, text = n * 5000, f"Sentence number {n}."
    return DialogueUpdateV1(
        event_id=ids.event_id("dialogue.update", dialogue_id, RUN, revision), dialogue_id=dialogue_id,
        meeting_id=meeting_id, speaker_id=speaker_id, start_ms=start, end_ms=start + 3000, text=text,
        status=status, revision=revision, position=n if position is None else position,
        placed=status == "final" if placed is None else placed, utterance_ids=(uid,),
        run=RUN, utterances=(DialogueUtterance(utterance_id=uid, start_ms=start, end_ms=start + 3000, text=text,
                                               final=not partial),),
    )  # type: ignore[arg-type]  # fmt: skip


async def until(ws: Any, found: Callable[[Message], bool], what: str, timeout_s: float = 60) -> list[Message]:
    """Every message the socket sends up to and including the first that ``found`` holds for."""
    got: list[Message] = []
    while not got or not found(got[-1]):
        try:
            got.append(orjson.loads(await asyncio.wait_for(ws.recv(), timeout_s)))
        except TimeoutError:
            raise AssertionError(f"never: {what}; got {got}") from None
    return got


def of_type(messages: list[Message], kind: str) -> list[Message]:
    return [m for m in messages if m["type"] == kind]


async def post_chat(person: Any, meeting_id: str, text: str) -> Message:
    async with person.client() as http:
        answer = await http.post(f"/v1/meetings/{meeting_id}/chat", json={"text": text})
    assert answer.status_code == 202, answer.text
    return {k: answer.json()[k] for k in ChatMessageOut.model_fields}


async def test_chat_participants_the_meeting_and_dialogues_arrive_typed(web: Web) -> None:
    tag = secrets.token_hex(4)
    meeting = await open_meeting(web.url, ["ana", "ben"], tag=tag)
    meeting_id, ana, ben = meeting.meeting_id, meeting.people["ana"], meeting.people["ben"]
    async with live_socket(web.url, meeting, "ana") as live:
        sent = await post_chat(ben, meeting_id, "The slides are in the shared folder.")
        chat = await until(live, lambda m: m["type"] == "chat", "ben's chat message")
        assert chat[-1] == {"type": "chat", **sent}, "the fields of GET .../chat, and a type"

        cy = await register(web.url, username("cy", tag))
        async with ana.client() as http:
            link = (await http.post(f"/v1/meetings/{meeting_id}/links", json={"role": "viewer"})).json()
        async with cy.client() as http:
            assert (await http.post("/v1/meeting-links/join", json={"token": link["token"]})).status_code == 200
        joined = await until(live, lambda m: m["type"] == "participant" and m["user_id"] == cy.user_id, "cy joins")
        assert {k: joined[-1][k] for k in ("meeting_id", "role", "status", "action")} == {
            "meeting_id": meeting_id, "role": "viewer", "status": "active", "action": "joined"}  # fmt: skip
        assert not [m for m in joined if m["type"] not in ("participant", "chat")], "links are not sent"

        speaking = box(meeting_id, ana.user_id, 0, "live", revision=1, partial=True)
        settled = box(meeting_id, ana.user_id, 0, "final", revision=2)
        await publish_dialogues(web.settings, speaking, settled)
        boxes = of_type(await until(live, lambda m: m.get("status") == "final", "ana's box, final"), "dialogue")
        assert [(b["revision"], [u["final"] for u in b["utterances"]]) for b in boxes] == [(1, [False]), (2, [True])]
        assert boxes[-1] == {"type": "dialogue", **settled.model_dump(mode="json")}

        async with ana.client() as http:
            assert (await http.patch(f"/v1/meetings/{meeting_id}", json={"title": "Renamed"})).status_code == 200
            assert (await http.post(f"/v1/meetings/{meeting_id}/end")).status_code == 200
        changes = of_type(await until(live, lambda m: m.get("action") == "ended", "the meeting ends"), "meeting")
        assert [(c["action"], c["title"]) for c in changes] == [("updated", "Renamed"), ("ended", "Renamed")]


async def test_a_socket_gets_what_the_store_has_not_written_yet(api_only: Web) -> None:
    meeting = await open_meeting(api_only.url, ["dee"])
    dee = meeting.people["dee"]
    spoken = box(meeting.meeting_id, dee.user_id, 0, "final")
    async with live_socket(api_only.url, meeting) as first:
        await publish_dialogues(api_only.settings, spoken)
        seen = await until(first, lambda m: m["type"] == "dialogue", "the box, live")  # the hub has it
    async with dee.client() as http:
        stored = (await http.get(f"/v1/meetings/{meeting.meeting_id}/dialogues")).json()["dialogues"]
    assert stored == [], "no store writer here: the store never gets it"
    async with live_socket(api_only.url, meeting) as second:
        replayed = await until(second, lambda m: m["type"] == "dialogue", "the box, from the hub's memory")
    assert replayed[-1] == seen[-1] == {"type": "dialogue", **spoken.model_dump(mode="json")}


async def test_a_reconnect_gets_nothing_placed_it_already_holds(web: Web) -> None:
    meeting = await open_meeting(web.url, ["eve"])
    meeting_id, eve = meeting.meeting_id, meeting.people["eve"]
    finals = [box(meeting_id, eve.user_id, n, "final") for n in range(3)]
    words = box(meeting_id, eve.user_id, 3, "final", placed=False)  # its place may still change
    tail = box(meeting_id, eve.user_id, 4, "live", partial=True)
    await publish_dialogues(web.settings, *finals, words, tail)
    early = await post_chat(eve, meeting_id, "first")
    later = await post_chat(eve, meeting_id, "second")
    assert early["sent_at_ms"] < later["sent_at_ms"]
    async with eve.client() as http:
        await poll(lambda: http.get(f"/v1/meetings/{meeting_id}/dialogues"),
                   lambda r: len(r.json()["dialogues"]) == 5, "the boxes stored", timeout_s=60)  # fmt: skip
        await poll(lambda: http.get(f"/v1/meetings/{meeting_id}/chat"),
                   lambda r: len(r.json()["messages"]) == 2, "the chat stored", timeout_s=60)  # fmt: skip

    async def first_messages(params: dict[str, Any]) -> list[Message]:
        """Everything the socket sends before a chat message posted once it is open: the snapshot and the
        replay come before anything new."""
        async with live_socket(web.url, meeting, params=params) as live:
            marker = await post_chat(eve, meeting_id, f"marker {params}")
            return (await until(live, lambda m: m.get("message_id") == marker["message_id"], "the marker"))[:-1]

    everything = await first_messages({})
    assert {(d["position"], d["status"], d["placed"]) for d in of_type(everything, "dialogue")} == {
        (0, "final", True), (1, "final", True), (2, "final", True), (3, "final", False), (4, "live", False)}  # fmt: skip
    assert {c["text"] for c in of_type(everything, "chat")} >= {"first", "second"}
    stored_first = next(d for d in of_type(everything, "dialogue") if "edited" in d and d["position"] == 0)
    assert stored_first["utterances"] == finals[0].model_dump(mode="json")["utterances"], "kept by the store"

    resumed = await first_messages({"resume": 2, "chat_since_ms": later["sent_at_ms"]})
    dialogues = of_type(resumed, "dialogue")
    assert {(d["position"], d["status"]) for d in dialogues} == {(2, "final"), (3, "final"), (4, "live")}
    assert all(not u["final"] for d in dialogues if d["status"] == "live" for u in d["utterances"])
    chat = {c["message_id"] for c in of_type(resumed, "chat")}
    assert later["message_id"] in chat and early["message_id"] not in chat, "one sent at T comes again"
    # A client that counted the final box at position 3 among those it holds still gets it: it may move.
    beyond = of_type(await first_messages({"resume": 4}), "dialogue")
    assert {(d["position"], d["status"]) for d in beyond} == {(3, "final"), (4, "live")}


async def test_a_bad_resume_closes_with_4000_and_keeps_the_ticket(web: Web) -> None:
    meeting = await open_meeting(web.url, ["fay"])
    ticket = await meeting.people["fay"].ticket(meeting.meeting_id, "live")
    base = f"{ws_url(web.url)}/v1/meetings/{meeting.meeting_id}/live?ticket={ticket}"
    for query, reason in (("&resume=-1", "resume: a whole number from 0 to 2147483647"),
                          ("&chat_since_ms=soon", "chat_since_ms: a whole number from 0 to 4611686018427387904")):  # fmt: skip
        async with websockets.connect(base + query) as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert (ws.close_code, ws.close_reason) == (4000, reason)
    async with websockets.connect(base + "&resume=0") as ws:
        with pytest.raises(TimeoutError):  # open and quiet: the ticket was not used up by the bad requests
            await asyncio.wait_for(ws.recv(), timeout=2)


async def test_a_deleted_meeting_closes_its_sockets_with_4404(web: Web) -> None:
    meeting = await open_meeting(web.url, ["gus", "hal"])
    async with live_socket(web.url, meeting, "hal") as live:
        async with meeting.people["gus"].client() as http:
            assert (await http.delete(f"/v1/meetings/{meeting.meeting_id}")).status_code == 204
        deleted = await until(live, lambda m: m.get("action") == "deleted", "the deletion")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(live.recv(), 30)
    assert deleted[-1]["type"] == "meeting"
    assert (live.close_code, live.close_reason) == (4404, "the meeting was deleted")

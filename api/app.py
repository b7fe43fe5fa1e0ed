"""REST and WebSocket endpoints of the read API."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, WebSocket
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect

from api import queries
from api.access import NOT_FOUND, CanRead
from api.live import LiveHub
from api.live_messages import BadResume, LiveMessage, ResumePoint, chat_message, resume_point, stored_dialogue
from api.responses import declared
from api.socket_auth import socket_reader
from palaver import ids
from palaver.admission import Full
from palaver.auth.tickets import TicketRefused
from palaver.metrics import API_LIVE_SOCKETS, SOCKETS_REFUSED
from palaver.store import Store, StoreUnavailable

log = logging.getLogger(__name__)
router = APIRouter(tags=["meetings"])



class UtteranceOut(BaseModel):
    utterance_id: str
    start_ms: int
    end_ms: int
    text: str
    final: bool  # a final transcript (settled words); false: the speaker's open partial (may still change)


class DialogueOut(BaseModel):
    dialogue_id: str
    speaker_id: str
    start_ms: int
    end_ms: int
    text: str  # the latest human edit's text, else auto-correct's (a machine edit), else the machine's
    status: str  # live: the words may still change | final: they no longer do
    revision: int
    position: int
    placed: bool  # the meeting's watermark has passed it: its position is fixed too (only final ones)
    edited: bool
    machine_text: str
    run: str
    utterance_ids: list[str]
    # The machine's utterances of the newest revision, in utterance_ids' order (an edited dialogue's text is
    # the human's); empty for dialogues stored before utterances were kept.
    utterances: list[UtteranceOut]


class TranscriptOut(BaseModel):
    transcript_id: str
    meeting_id: str
    run: str
    raw_transcript: str  # the machine's, one "speaker: text" line per final dialogue
    processed_transcript: str  # with human edits
    language: str
    revision: int  # number of final dialogues it holds
    watermark_ms: int  # final up to this media time
    edited: bool
    deleted: bool


class MeetingDialogues(BaseModel):
    meeting_id: str
    run: str | None
    dialogues: list[DialogueOut]


@router.get("/v1/meetings/{meeting_id}/dialogues", response_model=MeetingDialogues, responses=NOT_FOUND)
async def get_dialogues(
    request: Request,
    view: CanRead,
    run: Annotated[str | None, Query(description="Which run (engine:model); default the newest")] = None,
) -> dict[str, Any]:
    """The meeting's dialogues (speaker turns), ordered by ``start_ms`` on the meeting's media timeline.
    A meeting nobody has spoken in yet has none (200 with an empty list)."""
    meeting_id = view.meeting.meeting_id
    store: Store = request.app.state.store
    run = run or await queries.latest_run(store, meeting_id)
    rows = await queries.dialogues(store, meeting_id, run) if run else []
    return {"meeting_id": meeting_id, "run": run, "dialogues": rows}


@router.get("/v1/meetings/{meeting_id}/transcript", response_model=TranscriptOut,
            responses=declared(401, 404, notes={404: "No such meeting for this caller, or no final dialogue yet"}))  # fmt: skip
async def get_transcript(
    request: Request,
    view: CanRead,
    run: Annotated[str | None, Query(description="Which run (engine:model); default the newest")] = None,
) -> dict[str, Any]:
    """The merged transcript: final dialogues in media order, rebuilt as the watermark advances."""
    meeting_id = view.meeting.meeting_id
    store: Store = request.app.state.store
    run = run or await queries.latest_run(store, meeting_id)
    found = await queries.transcript(store, meeting_id, run) if run else None
    if found is None:
        raise HTTPException(status_code=404, detail=f"meeting {meeting_id} has no transcript yet")
    return found


# The newest chat messages a live socket's snapshot sends (GET .../chat's default page): a page shows the
# recent conversation at once and pages further back over REST.
CHAT_SNAPSHOT_LIMIT = 500


@router.websocket("/v1/meetings/{meeting_id}/live")
async def live_meeting(ws: WebSocket, meeting_id: str, ticket: str | None = None, resume: str | None = None,
                       chat_since_ms: str | None = None) -> None:  # fmt: skip
    """Pushes what a meeting page shows as it happens: JSON text messages, each with a ``type``:
    ``dialogue`` (a box created or revised, with its ``utterances``), ``chat``, ``participant`` (joined,
    invited, role changed, left, removed), ``meeting`` (updated, ended, deleted), ``summary`` (a piece of
    the detailed summary enrichment is writing) and ``insights`` (an enrichment's whole result); ``task`` is
    reserved. Their fields: ``api.live_messages``. Summaries and results are not in the snapshot: a page
    GETs ``.../insights`` when it (re)connects.

    First a snapshot from the store: the meeting's dialogues (of its newest run) in media order, then its
    newest 500 chat messages, oldest first; then the messages of the last minute that this server
    remembers (the store may not hold them yet); then every new message. So a message may come twice, and
    an older revision after a newer one: a client keeps the highest ``revision`` per ``dialogue_id``, the
    highest ``version`` per participant ``user_id`` and of the meeting, one chat message per
    ``message_id``, and drops ``retracted`` dialogues. Participants are not in the snapshot (``GET
    .../participants``).

    A reconnecting client says what it holds, and the snapshot and the remembered messages leave it out:
    ``resume=N``, the meeting's first N placed dialogues (``position`` below N; the others are sent again),
    and ``chat_since_ms=T``, chat messages sent before T (the newest ``sent_at_ms`` it holds: messages sent
    at T come again). Human edits are not on the socket: an edited dialogue's text is in the snapshot
    (``edited``), and in ``GET .../dialogues``.

    Opened with the browser's session cookie or a single-use ``ticket`` (``POST .../live-tickets``), by a
    page of this server's origin or of ``PALAVER_ALLOWED_ORIGINS``. Closes before sending anything with
    4000 (a bad meeting id, ``resume`` or ``chat_since_ms``: the reason names it; the ticket is not used up),
    4401 (not signed in, or a bad ticket), 4403 (a foreign page, or a ticket for something else) or 4404
    (no such meeting for this caller); with 1013 (try again later) when the store cannot be read, when the
    process holds ``PALAVER_LIVE_MAX_SOCKETS`` live sockets (the reason ends in ``retry after N s``; before
    anything is sent) or when the client reads too slowly to keep up; with 4404 after a ``meeting`` message
    of its deletion."""
    await ws.accept()
    if not ids.is_valid_id_part(meeting_id):
        await ws.close(code=4000, reason="meeting id: 1-64 of [A-Za-z0-9._-]")
        return
    try:
        held = resume_point(resume, chat_since_ms)
    except BadResume as bad:
        await ws.close(code=4000, reason=str(bad))
        return
    try:
        await socket_reader(ws, meeting_id, ticket)
    except TicketRefused as refused:
        await ws.close(code=refused.code, reason=refused.reason)
        return
    except StoreUnavailable as exc:
        log.warning("live %s: %s", meeting_id, exc)
        await ws.close(code=1013, reason="the store is unavailable; try again")
        return
    hub: LiveHub = ws.app.state.live
    store: Store | None = getattr(ws.app.state, "store", None)
    try:
        subscription = hub.subscribe(meeting_id)  # before the snapshot: what the store lacks comes after it
    except Full as full:
        SOCKETS_REFUSED.labels(socket="live").inc()
        await ws.close(code=full.code, reason=full.reason)
        return
    API_LIVE_SOCKETS.inc()
    receiver = asyncio.create_task(_wait_for_close(ws))
    try:
        try:
            stored = await _snapshot(store, meeting_id, held) if store is not None else []
        except StoreUnavailable as exc:
            log.warning("live %s: %s", meeting_id, exc)
            await ws.close(code=1013, reason="the store is unavailable; try again")
            return
        for message in [*stored, *subscription.recent]:
            if held.wants(message):
                await ws.send_text(message.text)
        while not receiver.done():
            getter = asyncio.create_task(subscription.queue.get())
            await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            live: LiveMessage | None = getter.result()
            if live is None:
                await ws.close(code=1013, reason="client too slow; reconnect")
                break
            await ws.send_text(live.text)
            if live.close is not None:
                await ws.close(code=live.close[0], reason=live.close[1])
                break
    except WebSocketDisconnect:
        pass
    finally:
        receiver.cancel()
        hub.unsubscribe(subscription)
        API_LIVE_SOCKETS.dec()


async def _snapshot(store: Store, meeting_id: str, held: ResumePoint) -> list[LiveMessage]:
    """The stored dialogues of the meeting's newest run and its newest chat messages, less what the client
    holds."""
    run = await queries.latest_run(store, meeting_id)
    rows = await queries.dialogues(store, meeting_id, run, held.placed_held) if run else []
    chat = await queries.latest_chat_messages(store, meeting_id, held.chat_since_ms, CHAT_SNAPSHOT_LIMIT)
    return [*(stored_dialogue(meeting_id, row) for row in rows), *(chat_message(row) for row in chat)]


async def _wait_for_close(ws: WebSocket) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return

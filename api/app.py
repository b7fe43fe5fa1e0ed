"""REST and WebSocket endpoints of the read API."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, WebSocket
from pydantic import BaseModel
from starlette.websockets import WebSocketDisconnect

from api import queries
from api.live import LiveHub
from palaver import ids
from palaver.events import DialogueUpdateV1
from palaver.metrics import API_LIVE_SOCKETS
from palaver.store import Store

log = logging.getLogger(__name__)
router = APIRouter(tags=["meetings"])

MeetingId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="The meeting's id")]


class DialogueOut(BaseModel):
    dialogue_id: str
    speaker_id: str
    start_ms: int
    end_ms: int
    text: str
    status: str
    revision: int
    position: int


class MeetingDialogues(BaseModel):
    meeting_id: str
    run: str | None
    dialogues: list[DialogueOut]


@router.get("/v1/meetings/{meeting_id}/dialogues", response_model=MeetingDialogues)
async def get_dialogues(
    request: Request,
    meeting_id: MeetingId,
    run: Annotated[str | None, Query(description="Which run (engine:model); default the newest")] = None,
) -> dict[str, Any]:
    """The meeting's dialogues (speaker turns), ordered by ``start_ms`` on the meeting's media timeline.
    An unknown meeting has no dialogues yet (200 with an empty list), so clients can poll a new meeting."""
    store: Store = request.app.state.store
    run = run or await queries.latest_run(store, meeting_id)
    rows = await queries.dialogues(store, meeting_id, run) if run else []
    return {"meeting_id": meeting_id, "run": run, "dialogues": rows}


@router.websocket("/v1/meetings/{meeting_id}/live")
async def live_dialogues(ws: WebSocket, meeting_id: str) -> None:
    """Pushes every dialogue event of the meeting as JSON text (``dialogue_id``, ``speaker_id``,
    ``start_ms``, ``end_ms``, ``text``, ``status``, ``revision``, ...). It first sends the stored
    dialogues, then live events; a client keeps the highest ``revision`` per ``dialogue_id``."""
    await ws.accept()
    if not ids.is_valid_id_part(meeting_id):
        await ws.close(code=4000, reason="meeting id: 1-64 of [A-Za-z0-9._-]")
        return
    hub: LiveHub = ws.app.state.live
    store: Store | None = getattr(ws.app.state, "store", None)
    queue = hub.subscribe(meeting_id)
    API_LIVE_SOCKETS.inc()
    receiver = asyncio.create_task(_wait_for_close(ws))
    try:
        if store is not None:
            run = await queries.latest_run(store, meeting_id)
            for row in await queries.dialogues(store, meeting_id, run) if run else []:
                await ws.send_json({"event": "dialogue.update", "meeting_id": meeting_id, **row})
        while not receiver.done():
            getter = asyncio.create_task(queue.get())
            await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                getter.cancel()
                break
            event: DialogueUpdateV1 | None = getter.result()
            if event is None:
                await ws.close(code=1013, reason="client too slow; reconnect")
                break
            await ws.send_text(event.model_dump_json())
    except WebSocketDisconnect:
        pass
    finally:
        receiver.cancel()
        hub.unsubscribe(meeting_id, queue)
        API_LIVE_SOCKETS.dec()


async def _wait_for_close(ws: WebSocket) -> None:
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return

"""Meeting chat. A posted message becomes a ``chat.message`` event on the ``chat`` topic (keyed by meeting,
so a meeting's messages keep their order); the store writer upserts it into ``chat_messages``. The answer
is 202 once the event is durable in Kafka: the message is readable as soon as the store writer has it.
An ``Idempotency-Key`` is kept with the message (``api.idempotency``)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Path, Query, Request
from pydantic import BaseModel, Field

from api import fields, queries
from api.access import NOT_FOUND, WRITE_NOTES, CanRead, CanWrite
from api.idempotency import KEY_MAX_LENGTH, KEY_REUSED, KeyedWrites, earlier_write, scope_of
from api.identity import SignedIn
from api.responses import declared
from palaver import ids
from palaver.events import ChatMessageV1, encode

router = APIRouter(tags=["chat"])

MeetingId = Annotated[str, Path(pattern=fields.ID_PART, description="The meeting's id")]
IdempotencyKey = Annotated[str | None, Header(
    min_length=1, max_length=KEY_MAX_LENGTH,
    description="A retry with the same key is the same message; the key with another user or text is 409",
)]  # fmt: skip


class ChatPost(BaseModel):
    text: str = Field(min_length=1, max_length=4000, pattern=fields.NOT_BLANK, description="Not only whitespace")


class ChatMessageOut(BaseModel):
    message_id: str
    meeting_id: str
    user_id: str
    text: str
    sent_at_ms: int  # server time the API accepted it, ms since the epoch


class ChatAccepted(ChatMessageOut):
    status: Literal["accepted"] = "accepted"


class MeetingChat(BaseModel):
    meeting_id: str
    messages: list[ChatMessageOut]


CHAT_REQUEST_FIELDS = ("user_id", "text")  # the user is the signed-in caller  # what a retry must repeat (the meeting is the key's scope)


def _writes(request: Request) -> KeyedWrites:
    return request.app.state.idempotency  # type: ignore[no-any-return]


@router.post("/v1/meetings/{meeting_id}/chat", status_code=202, response_model=ChatAccepted,
             responses=declared(400, 401, 403, 404, 409, notes={**WRITE_NOTES, 409: KEY_REUSED}))  # fmt: skip
async def post_chat_message(request: Request, caller: SignedIn, view: CanWrite, body: ChatPost,
                            idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Send a chat message to the meeting as the signed-in caller. A request with an ``Idempotency-Key``
    already used in this meeting answers as the first did (the same message, ``sent_at_ms`` included) when
    it has the same user and ``text``, and 409 when it differs, without writing anything; the key is kept
    with the message."""
    meeting_id, user_id = view.meeting.meeting_id, caller.user_id
    if idempotency_key is None:
        return await _send(request, meeting_id, user_id, body.text, None)
    writes = _writes(request)
    scope = scope_of("chat", meeting_id, idempotency_key)
    async with writes.hold(scope):
        earlier = await earlier_write(
            writes, scope, idempotency_key, {"user_id": user_id, "text": body.text}, CHAT_REQUEST_FIELDS, "message_id",
            lambda: queries.chat_message_by_key(request.app.state.store, meeting_id, idempotency_key),
        )  # fmt: skip
        if earlier is not None:
            return {**{f: earlier[f] for f in ChatMessageOut.model_fields}, "status": "accepted"}
        sent = await _send(request, meeting_id, user_id, body.text, idempotency_key)
        writes.remember(scope, sent)
        return sent


async def _send(request: Request, meeting_id: str, user_id: str, text: str, key: str | None) -> dict[str, Any]:
    """Publish the message, answer with it."""
    message_id = ids.chat_message_id(meeting_id, user_id, key or uuid.uuid4().hex)
    event = ChatMessageV1(event_id=ids.event_id("chat.message", message_id), message_id=message_id,
                          meeting_id=meeting_id, user_id=user_id, text=text,
                          sent_at_ms=int(time.time() * 1000), idempotency_key=key)  # fmt: skip
    await request.app.state.producer.send_and_wait(request.app.state.chat_topic, encode(event),
                                                   key=meeting_id.encode())  # fmt: skip
    return {**event.model_dump(include=set(ChatMessageOut.model_fields)), "status": "accepted"}


@router.get("/v1/meetings/{meeting_id}/chat", response_model=MeetingChat, responses=NOT_FOUND)
async def get_chat(
    request: Request,
    view: CanRead,
    since_ms: Annotated[
        int, Query(ge=0, description="Only messages sent at or after (ms since the epoch)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    """The meeting's chat, oldest first (by ``sent_at_ms``, then ``message_id``); page on with ``since_ms`` =
    the last ``sent_at_ms`` and drop the message ids already shown."""
    meeting_id = view.meeting.meeting_id
    rows = await queries.chat_messages(request.app.state.store, meeting_id, since_ms, limit)
    return {"meeting_id": meeting_id, "messages": rows}

"""Meeting chat. A posted message becomes a ``chat.message`` event on the ``chat`` topic (keyed by meeting,
so a meeting's messages keep their order); the store writer upserts it into ``chat_messages``. The answer
is 202 once the event is durable in Kafka: the message is readable as soon as the store writer has it."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Path, Query, Request
from pydantic import BaseModel, Field

from api import queries
from api.user_state import RecentWrites
from palaver import ids
from palaver.events import ChatMessageV1, encode

router = APIRouter(tags=["chat"])

MeetingId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$", description="The meeting's id")]
IdempotencyKey = Annotated[str | None, Header(description="Retries with the same key are one message")]


class ChatPost(BaseModel):
    user_id: str = Field(pattern=r"^usr_[0-9a-f]{24}$", description="Who writes (an existing user)")
    text: str = Field(min_length=1, max_length=4000, pattern=r"\S", description="Not only whitespace")


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


def _sent(request: Request) -> RecentWrites[ChatMessageV1]:
    return request.app.state.chat_sent  # type: ignore[no-any-return]


@router.post("/v1/meetings/{meeting_id}/chat", status_code=202, response_model=ChatAccepted,
             responses={404: {"description": "unknown meeting or user"}})  # fmt: skip
async def post_chat_message(request: Request, meeting_id: MeetingId, body: ChatPost,
                            idempotency_key: IdempotencyKey = None) -> dict[str, Any]:  # fmt: skip
    """Send a chat message to the meeting. The meeting must exist (a stream of it has started) and the
    user must exist and not be deleted. A retry with the same ``Idempotency-Key`` is the same message."""
    message_id = ids.chat_message_id(meeting_id, body.user_id, idempotency_key or uuid.uuid4().hex)
    again = _sent(request).get(message_id)
    if again is None:
        if await request.app.state.users.get(request, body.user_id) is None:
            raise HTTPException(status_code=404, detail=f"no user {body.user_id}")
        if not await queries.meeting_known(request.app.state.store, meeting_id):
            raise HTTPException(status_code=404, detail=f"no meeting {meeting_id}")
        event = ChatMessageV1(event_id=ids.event_id("chat.message", message_id), message_id=message_id,
                              meeting_id=meeting_id, user_id=body.user_id, text=body.text,
                              sent_at_ms=int(time.time() * 1000))  # fmt: skip
        await request.app.state.producer.send_and_wait(request.app.state.chat_topic, encode(event),
                                                       key=meeting_id.encode())  # fmt: skip
        _sent(request).put(message_id, event)
    else:
        event = again  # already durable: answer as the first time, so the retry's clock does not move it
    return {**event.model_dump(include=set(ChatMessageOut.model_fields)), "status": "accepted"}


@router.get("/v1/meetings/{meeting_id}/chat", response_model=MeetingChat)
async def get_chat(
    request: Request,
    meeting_id: MeetingId,
    since_ms: Annotated[
        int, Query(ge=0, description="Only messages sent at or after (ms since the epoch)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> dict[str, Any]:
    """The meeting's chat, oldest first (by ``sent_at_ms``, then ``message_id``). An unknown meeting has no
    messages (200 with an empty list), so clients can poll; page on with ``since_ms`` = the last
    ``sent_at_ms`` and drop the message ids already shown."""
    rows = await queries.chat_messages(request.app.state.store, meeting_id, since_ms, limit)
    return {"meeting_id": meeting_id, "messages": rows}

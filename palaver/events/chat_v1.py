"""Meeting chat, as events on the ``chat`` topic (key: ``meeting_id``, so a meeting's messages stay in
order in one partition). A message is immutable: one event, one row, version 1; a redelivery or replay
upserts the same ``message_id``. ``idempotency_key`` (optional; older payloads decode as None) is the
API request's key, kept with the row so that a reused key is recognised after the API forgot it."""

from __future__ import annotations

from typing import Literal

from palaver.events.base import EventV


class ChatMessageV1(EventV):
    event: Literal["chat.message"] = "chat.message"
    version: Literal[1] = 1
    event_id: str  # ids.event_id("chat.message", message_id)
    message_id: str  # ids.chat_message_id(meeting_id, user_id, idempotency key)
    meeting_id: str
    user_id: str
    text: str
    sent_at_ms: int  # when the API accepted it (server clock, ms since the epoch)
    idempotency_key: str | None = None  # the request's Idempotency-Key (the message id derives from it)

"""The messages of the live socket (``WS /v1/meetings/{meeting_id}/live``), as pure functions: an event or a
stored row in, the JSON text a browser gets out. Every message is a JSON object with a ``type``:

- ``dialogue``: a dialogue box of a live run (never a replay's), created or revised (``DialogueUpdateV1``'s
  fields, ``event`` included, and ``utterances``). From the store's snapshot it also carries ``edited`` and ``machine_text`` (``text`` is
  the human's when edited), from a live event ``event_id`` and ``version``. Keep the highest ``revision``
  per ``dialogue_id`` (and ``run``); drop ``retracted`` ones. ``status`` ``final``: its words no longer
  change; ``placed``: its ``position`` neither (what ``?resume`` counts).
- ``chat``: a chat message, the fields ``GET .../chat`` returns (``message_id, meeting_id, user_id, text,
  sent_at_ms``). Immutable: keep one per ``message_id``.
- ``participant``: a member's whole state after a change: ``user_id, role, status`` (active, left,
  removed), ``action`` (joined, invited, role_changed, left, removed) and ``version``. Keep the highest
  ``version`` per ``user_id``.
- ``meeting``: the meeting's state after a change: ``action`` (updated: a new title, agenda or start;
  ended; deleted), ``title, scheduled_start_ms, agenda, ended_at_ms, version``. Keep the highest
  ``version``. After ``deleted`` the socket closes with 4404.
- ``summary``: a piece of the detailed summary (Markdown) that enrichment is writing: ``meeting_id, run``
  (the enrichment run), ``enrichment_id, seq`` (from 0, in order), ``text`` and ``reset`` (true: drop the
  pieces of this ``enrichment_id`` before this one; the backend failed and its stand-in starts over). The
  pieces of one ``enrichment_id`` joined in ``seq`` order are its detailed summary so far; its ``insights``
  message replaces them.
- ``insights``: an enrichment's whole result (``MeetingInsightsV1``'s fields, ``event`` included:
  ``run, enrichment_id, trigger, final, revision, summary_brief, summary_detailed, action_items`` (the
  machine's, without human edits: ``GET .../action-items`` has those), ``keywords, mood, agenda,
  metrics, fallback, produced_at_ms``...). Keep the highest ``revision`` per ``run``; a page shows the run
  of the newest ``produced_at_ms`` (what ``GET .../insights`` shows by default). Not in the socket's
  snapshot: a page GETs ``.../insights`` (and ``.../action-items``) when it (re)connects.
- ``task``: reserved (changes of single action items); a client ignores a type it does not know.

Results of a replay's transcript run are not sent (as its dialogues are not).

Every kind of message may come twice (the snapshot and the hub's replay overlap, Kafka redelivers): the
"keep" rules above make a repeat harmless. Share links are not sent (only the owner may see them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from palaver.events import ChatMessageV1, DialogueUpdateV1, MeetingChangedV1, MeetingMemberV1, encode
from palaver.events.base import EventV
from palaver.events.codec import dumps
from palaver.events.insights_v1 import MeetingInsightsV1, SummaryChunkV1
from palaver.runs import is_replay

MessageType = Literal["dialogue", "chat", "participant", "meeting", "summary", "insights"]
RESERVED_TYPES = ("task",)  # later: clients must ignore types they do not know
MEETING_DELETED = (4404, "the meeting was deleted")

_DIALOGUE_PREFIX = b'{"type":"dialogue",'
_INSIGHTS_PREFIX = b'{"type":"insights",'


@dataclass(frozen=True, slots=True)
class LiveMessage:
    """One message of the live socket, encoded once however many sockets send it."""

    type: MessageType
    meeting_id: str
    key: str  # the thing it describes: a newer message with the same type and key supersedes it
    order: int  # which of two messages with the same key is newer (revision, version; 0 for chat)
    text: str  # the JSON text sent
    placed_position: int | None = None  # a placed dialogue's position (fixed for good): what ``?resume`` leaves out
    sent_at_ms: int | None = None  # a chat message's: what ``?chat_since_ms`` leaves out
    close: tuple[int, str] | None = None  # after sending it, close the socket with this code and reason


def message_of(event: EventV) -> LiveMessage | None:
    """The live socket's message for an event of the dialogues, chat, meetings or insights topic; None for events no
    client sees (watermarks, share links, a meeting's creation, a replay's dialogues: the socket shows the
    meeting as it happens, its live run; ``palaver.runs``)."""
    if isinstance(event, DialogueUpdateV1):
        if is_replay(event.run):
            return None
        # The event's own JSON with the type in front: one serialization, on the path of every revision.
        text = (_DIALOGUE_PREFIX + encode(event)[1:]).decode()
        placed = event.position if event.placed else None
        return LiveMessage("dialogue", event.meeting_id, f"{event.run}/{event.dialogue_id}", event.revision, text,
                           placed_position=placed)  # fmt: skip
    if isinstance(event, ChatMessageV1):
        return chat_message({"message_id": event.message_id, "meeting_id": event.meeting_id,
                             "user_id": event.user_id, "text": event.text, "sent_at_ms": event.sent_at_ms})  # fmt: skip
    if isinstance(event, MeetingMemberV1):
        body = {"type": "participant", "meeting_id": event.meeting_id, "user_id": event.user_id,
                "role": event.role, "status": event.status, "action": event.change, "version": event.member_version}  # fmt: skip
        return LiveMessage("participant", event.meeting_id, event.user_id, event.member_version, _json(body))
    if isinstance(event, SummaryChunkV1):
        return None if is_replay(event.run) else summary_message(event)
    if isinstance(event, MeetingInsightsV1):
        if is_replay(event.transcript_run):
            return None
        text = (_INSIGHTS_PREFIX + encode(event)[1:]).decode()
        return LiveMessage("insights", event.meeting_id, event.run, event.revision, text)
    if isinstance(event, MeetingChangedV1) and event.change != "created":  # sockets open on existing meetings
        body = {"type": "meeting", "meeting_id": event.meeting_id, "action": event.change, "title": event.title,
                "scheduled_start_ms": event.scheduled_start_ms, "agenda": event.agenda,
                "ended_at_ms": event.ended_at_ms, "version": event.meeting_version}  # fmt: skip
        close = MEETING_DELETED if event.deleted or event.change == "deleted" else None
        return LiveMessage("meeting", event.meeting_id, event.meeting_id, event.meeting_version, _json(body),
                           close=close)  # fmt: skip
    return None


def summary_message(chunk: SummaryChunkV1) -> LiveMessage:
    """A piece of a detailed summary being written; each piece is its own thing (``enrichment_id/seq``)."""
    body = {"type": "summary", "meeting_id": chunk.meeting_id, "run": chunk.run, "enrichment_id": chunk.enrichment_id,
            "seq": chunk.seq, "text": chunk.text, "reset": chunk.reset}  # fmt: skip
    return LiveMessage("summary", chunk.meeting_id, f"{chunk.enrichment_id}/{chunk.seq}", chunk.seq, _json(body))


def stored_dialogue(meeting_id: str, row: dict[str, Any]) -> LiveMessage:
    """A dialogue of the store's snapshot (a row of ``api.queries.dialogues``)."""
    body = {"type": "dialogue", "event": "dialogue.update", "meeting_id": meeting_id, **row}
    placed = row["position"] if row["placed"] else None
    return LiveMessage("dialogue", meeting_id, f"{row['run']}/{row['dialogue_id']}", row["revision"], _json(body),
                       placed_position=placed)  # fmt: skip


def chat_message(row: dict[str, Any]) -> LiveMessage:
    """A chat message, from an event or the store (a row of ``api.queries.chat_messages``)."""
    body = {"type": "chat", "message_id": row["message_id"], "meeting_id": row["meeting_id"],
            "user_id": row["user_id"], "text": row["text"], "sent_at_ms": row["sent_at_ms"]}  # fmt: skip
    return LiveMessage("chat", row["meeting_id"], row["message_id"], 0, _json(body), sent_at_ms=row["sent_at_ms"])


def _json(body: dict[str, Any]) -> str:
    return dumps(body).decode()


@dataclass(frozen=True, slots=True)
class ResumePoint:
    """What a reconnecting client already holds, so the snapshot and the replay leave it out: the meeting's
    first ``placed_held`` placed dialogues (by ``position``, in the run the snapshot shows; a final dialogue
    not yet placed may still move, so it is sent again), and the chat
    messages sent before ``chat_since_ms`` (ms since the epoch; one sent at it is sent again, as
    ``GET .../chat?since_ms=`` pages)."""

    placed_held: int = 0
    chat_since_ms: int = 0

    def wants(self, message: LiveMessage) -> bool:
        if message.placed_position is not None and message.placed_position < self.placed_held:
            return False
        return message.sent_at_ms is None or message.sent_at_ms >= self.chat_since_ms


class BadResume(ValueError):
    """A resume parameter that is not a whole number in range; the message names it."""


MAX_RESUME = 2**31 - 1  # far beyond any meeting's dialogues, within the store's UInt32 positions
MAX_CHAT_SINCE_MS = 2**62  # within the store's Int64 milliseconds


def resume_point(resume: str | None, chat_since_ms: str | None) -> ResumePoint:
    """The socket's ``?resume=N&chat_since_ms=T``; an absent one means from the start. Raises BadResume."""
    return ResumePoint(_whole("resume", resume, MAX_RESUME), _whole("chat_since_ms", chat_since_ms, MAX_CHAT_SINCE_MS))


def _whole(name: str, value: str | None, most: int) -> int:
    if value is None:
        return 0
    if not (value.isascii() and value.isdigit() and len(value) <= 19 and int(value) <= most):
        raise BadResume(f"{name}: a whole number from 0 to {most}")
    return int(value)

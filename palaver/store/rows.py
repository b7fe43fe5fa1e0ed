"""Pure processors: one decoded event plus its Kafka provenance in, rows for tables out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from palaver import ids
from palaver.events import (
    ActionItemEditedV1,
    ChatMessageV1,
    DialogueEditedV1,
    DialogueUpdateV1,
    StreamStartedV1,
    TranscriptEditedV1,
    TranscriptFinalV1,
    UserChangedV1,
)
from palaver.events.base import EventV
from palaver.events.codec import dumps
from palaver.events.insights_v1 import MeetingInsightsV1
from palaver.events.meetings_v1 import MeetingChangedV1, MeetingLinkV1, MeetingMemberV1
from palaver.events.sessions_v1 import SessionRevokedV1


@dataclass(frozen=True, slots=True)
class Provenance:
    topic: str
    partition: int
    offset: int


UTTERANCE_COLUMNS = (
    "utterance_id", "meeting_id", "stream_id", "speaker_id", "run", "start_ms", "end_ms", "start_sample",
    "end_sample", "sample_rate", "text", "words", "confidence", "language", "engine", "model", "version",
    "event_id", "kafka_topic", "kafka_partition", "kafka_offset",
)  # fmt: skip
DIALOGUE_COLUMNS = (
    "dialogue_id", "meeting_id", "speaker_id", "transcript_id", "run", "start_ms", "end_ms", "dialogue_text",
    "status", "revision", "position", "placed", "utterance_ids", "utterances", "event_id", "kafka_topic",
    "kafka_partition",
    "kafka_offset",
)  # fmt: skip
PARTICIPANT_COLUMNS = (
    "meeting_id", "user_id", "role", "stream_id", "stream_start_ms", "timeline_epoch_ms", "version", "event_id",
    "kafka_topic", "kafka_partition", "kafka_offset",
)  # fmt: skip
MEETING_COLUMNS = (
    "meeting_id", "title", "description", "agenda", "glossary", "date_time", "duration_ms", "organizer_id",
    "created_at_ms",
    "ended_at_ms", "deleted", "conference_active", "version", "event_id", "kafka_topic", "kafka_partition",
    "kafka_offset",
)  # fmt: skip
MEMBER_COLUMNS = (
    "meeting_id", "user_id", "role", "status", "via_link", "version", "event_id", "kafka_topic", "kafka_partition",
    "kafka_offset",
)  # fmt: skip
LINK_COLUMNS = (
    "meeting_id", "link_id", "role", "revoked", "created_at_ms", "version", "event_id", "kafka_topic",
    "kafka_partition", "kafka_offset",
)  # fmt: skip
REVOKED_SESSION_COLUMNS = (
    "session_id", "user_id", "revoked_at_ms", "expires_at_ms", "event_id", "kafka_topic", "kafka_partition",
    "kafka_offset",
)  # fmt: skip
EDIT_COLUMNS = (
    "edit_id", "meeting_id", "target_kind", "target_id", "action", "text", "fields", "editor", "edited_at_ms",
    "idempotency_key", "event_id", "kafka_topic", "kafka_partition", "kafka_offset",
)  # fmt: skip
USER_COLUMNS = (
    "user_id", "username", "email", "password_hash", "role", "profile_pic_url", "deleted", "created_at",
    "updated_at", "version", "event_id", "kafka_topic", "kafka_partition", "kafka_offset",
)  # fmt: skip
CHAT_MESSAGE_COLUMNS = (
    "message_id", "meeting_id", "user_id", "text", "sent_at", "idempotency_key", "version", "event_id",
    "kafka_topic", "kafka_partition", "kafka_offset",
)  # fmt: skip
INSIGHT_COLUMNS = (
    "enrichment_id", "meeting_id", "run", "transcript_run", "backend", "trigger", "final", "transcript_revision",
    "revision", "result", "fallback", "produced_at_ms", "event_id", "kafka_topic", "kafka_partition", "kafka_offset",
)  # fmt: skip
SUMMARY_COLUMNS = (
    "summary_id", "meeting_id", "run", "summary_type", "text", "revision", "event_id", "kafka_topic",
    "kafka_partition", "kafka_offset",
)  # fmt: skip
ACTION_ITEM_COLUMNS = (
    "action_item_id", "meeting_id", "run", "description", "assigned_to", "assignee_id", "status", "priority",
    "start_date", "due_date", "source_dialogue_id", "dialogue_ids", "revision", "event_id", "kafka_topic",
    "kafka_partition", "kafka_offset",
)  # fmt: skip
COLUMNS = {
    "utterances": UTTERANCE_COLUMNS,
    "dialogues": DIALOGUE_COLUMNS,
    "participants": PARTICIPANT_COLUMNS,
    "meetings": MEETING_COLUMNS,
    "edits": EDIT_COLUMNS,
    "users": USER_COLUMNS,
    "chat_messages": CHAT_MESSAGE_COLUMNS,
    "meeting_members": MEMBER_COLUMNS,
    "meeting_links": LINK_COLUMNS,
    "revoked_sessions": REVOKED_SESSION_COLUMNS,
    "meeting_insights": INSIGHT_COLUMNS,
    "summaries": SUMMARY_COLUMNS,
    "action_items": ACTION_ITEM_COLUMNS,
}

# A reader waits on a meeting's result row, then reads that revision's summaries and action items from their
# own tables: the writer inserts those first, so whoever sees the result row sees everything it names.
WRITTEN_LAST = ("meeting_insights",)


def write_order(tables: list[str]) -> list[str]:
    """``tables`` in the order a batch inserts them: as given, those in ``WRITTEN_LAST`` moved to the end."""
    return sorted(tables, key=lambda table: WRITTEN_LAST.index(table) + 1 if table in WRITTEN_LAST else 0)


ACTION_ITEM_FIELDS = ("description", "assigned_to", "status", "priority", "start_date", "due_date")


def rows_for(event: EventV, where: Provenance) -> list[tuple[str, tuple[Any, ...]]]:
    """(table, row) pairs for an event; empty for events the store does not keep as rows."""
    prov = (where.topic, where.partition, where.offset)
    if isinstance(event, TranscriptFinalV1):
        words = dumps([w.model_dump() for w in event.words]).decode()
        return [("utterances", (
            event.utterance_id, event.meeting_id, event.stream_id, event.speaker_id, event.run,
            event.start_ms, event.end_ms, event.start_sample, event.end_sample, event.sample_rate,
            event.text, words, event.confidence, event.language, event.engine, event.model, 1,
            event.event_id, *prov,
        ))]  # fmt: skip
    if isinstance(event, DialogueUpdateV1):
        return [("dialogues", (
            event.dialogue_id, event.meeting_id, event.speaker_id, ids.transcript_id(event.meeting_id, event.run),
            event.run, event.start_ms, event.end_ms, event.text, event.status, event.revision, event.position,
            event.placed, list(event.utterance_ids), dumps([u.model_dump() for u in event.utterances]).decode(), event.event_id,
            *prov,
        ))]  # fmt: skip
    if isinstance(event, StreamStartedV1):
        # A stream's start makes its speaker a participant; the meeting row it creates has version 0, so
        # a meeting created or edited through the API (a higher version) always wins.
        return [
            ("participants", (event.meeting_id, event.speaker_id, "speaker", event.stream_id,
                              event.stream_start_ms, event.timeline_epoch_ms, 0, event.event_id, *prov)),
            ("meetings", (event.meeting_id, "", "", [], [], None, 0, "", 0, None, 0, 1, 0, event.event_id, *prov)),
        ]  # fmt: skip
    if isinstance(event, DialogueEditedV1):
        return [_edit_row(event, "dialogue", event.dialogue_id, event.text, {}, prov)]
    if isinstance(event, TranscriptEditedV1):
        return [_edit_row(event, "transcript", event.meeting_id, event.text, {}, prov)]
    if isinstance(event, ActionItemEditedV1):
        fields = {k: getattr(event, k) for k in ACTION_ITEM_FIELDS if getattr(event, k) is not None}
        return [_edit_row(event, "action_item", event.action_item_id, None, fields, prov)]
    if isinstance(event, UserChangedV1):
        # The event is the user's whole state, so the row needs nothing else; its version decides which
        # state a read sees, whatever order the rows arrive in.
        return [("users", (
            event.user_id, event.username, event.email, event.password_hash, event.role, event.profile_pic_url,
            int(event.deleted), _utc(event.created_at_ms), _utc(event.updated_at_ms), event.user_version,
            event.event_id, *prov,
        ))]  # fmt: skip
    if isinstance(event, ChatMessageV1):
        return [("chat_messages", (
            event.message_id, event.meeting_id, event.user_id, event.text, _utc(event.sent_at_ms),
            event.idempotency_key or "", 1, event.event_id, *prov,
        ))]  # fmt: skip
    if isinstance(event, MeetingChangedV1):
        start = None if event.scheduled_start_ms is None else _utc(event.scheduled_start_ms)
        duration = 0 if event.ended_at_ms is None else max(0, event.ended_at_ms - event.created_at_ms)
        return [("meetings", (
            event.meeting_id, event.title, "", list(event.agenda), list(event.glossary), start, duration, event.owner_id,
            event.created_at_ms, event.ended_at_ms, int(event.deleted), int(event.ended_at_ms is None),
            event.meeting_version, event.event_id, *prov,
        ))]  # fmt: skip
    if isinstance(event, MeetingMemberV1):
        return [("meeting_members", (
            event.meeting_id, event.user_id, event.role, event.status, event.via_link or "", event.member_version,
            event.event_id, *prov,
        ))]  # fmt: skip
    if isinstance(event, MeetingLinkV1):
        return [("meeting_links", (
            event.meeting_id, event.link_id, event.role, int(event.revoked), event.created_at_ms,
            event.link_version, event.event_id, *prov,
        ))]  # fmt: skip
    if isinstance(event, SessionRevokedV1):
        return [("revoked_sessions", (
            event.session_id, event.user_id, event.revoked_at_ms, event.expires_at_ms, event.event_id, *prov,
        ))]  # fmt: skip
    if isinstance(event, MeetingInsightsV1):
        return _insight_rows(event, prov)
    return []


def _insight_rows(event: MeetingInsightsV1, prov: tuple[str, int, int]) -> list[tuple[str, tuple[Any, ...]]]:
    """The whole result in meeting_insights (summaries and action items included, so a read of one row sees
    one result whole, whatever the other tables hold yet); each summary and action item also in its own
    table, under the result's revision (edits and search address them by id)."""
    result = dumps({"summary": {"brief": event.summary_brief, "detailed": event.summary_detailed},
                    "action_items": [item.model_dump(mode="json") for item in event.action_items],
                    "keywords": event.keywords, "mood": event.mood, "agenda": event.agenda,
                    "metrics": event.metrics}).decode()  # fmt: skip
    fallback = "" if event.fallback is None else dumps(event.fallback).decode()
    rows: list[tuple[str, tuple[Any, ...]]] = [("meeting_insights", (
        event.enrichment_id, event.meeting_id, event.run, event.transcript_run, event.backend, event.trigger,
        event.final, event.transcript_revision, event.revision, result, fallback, event.produced_at_ms,
        event.event_id, *prov,
    ))]  # fmt: skip
    for kind, text in (("brief", event.summary_brief), ("detailed", event.summary_detailed)):
        summary_id = f"{event.meeting_id}/{event.run}/{kind}"
        rows.append(("summaries", (summary_id, event.meeting_id, event.run, kind, text, event.revision,
                                   event.event_id, *prov)))  # fmt: skip
    for item in event.action_items:
        rows.append(("action_items", (
            item.action_item_id, event.meeting_id, event.run, item.description, item.assignee, item.assignee_id,
            item.status, item.priority, _date(item.start_date), _date(item.due_date),
            item.dialogue_ids[0] if item.dialogue_ids else "", list(item.dialogue_ids), event.revision,
            event.event_id, *prov,
        )))  # fmt: skip
    return rows


def _date(iso: str | None) -> date | None:
    return None if iso is None else date.fromisoformat(iso)


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _edit_row(event: DialogueEditedV1 | TranscriptEditedV1 | ActionItemEditedV1, kind: str, target: str,
              text: str | None, fields: dict[str, Any], prov: tuple[str, int, int]) -> tuple[str, tuple[Any, ...]]:  # fmt: skip
    return "edits", (
        event.edit_id, event.meeting_id, kind, target, event.action, text, dumps(fields).decode(), event.editor,
        event.edited_at_ms, event.idempotency_key or "", event.event_id, *prov,
    )  # fmt: skip

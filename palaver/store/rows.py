"""Pure processors: one decoded event plus its Kafka provenance in, one row for one table out (or None)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from palaver.events import DialogueUpdateV1, TranscriptFinalV1
from palaver.events.base import EventV
from palaver.events.codec import dumps


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
    "dialogue_id", "meeting_id", "speaker_id", "run", "start_ms", "end_ms", "dialogue_text", "status",
    "revision", "position", "utterance_ids", "event_id", "kafka_topic", "kafka_partition", "kafka_offset",
)  # fmt: skip
COLUMNS = {"utterances": UTTERANCE_COLUMNS, "dialogues": DIALOGUE_COLUMNS}


def row_for(event: EventV, where: Provenance) -> tuple[str, tuple[Any, ...]] | None:
    """(table, row) for events the store keeps; None for events it ignores (stream lifecycle)."""
    prov = (where.topic, where.partition, where.offset)
    if isinstance(event, TranscriptFinalV1):
        words = dumps([w.model_dump() for w in event.words]).decode()
        return "utterances", (
            event.utterance_id, event.meeting_id, event.stream_id, event.speaker_id, event.run,
            event.start_ms, event.end_ms, event.start_sample, event.end_sample, event.sample_rate,
            event.text, words, event.confidence, event.language, event.engine, event.model, 1,
            event.event_id, *prov,
        )  # fmt: skip
    if isinstance(event, DialogueUpdateV1):
        return "dialogues", (
            event.dialogue_id, event.meeting_id, event.speaker_id, event.run, event.start_ms, event.end_ms,
            event.text, event.status, event.revision, event.position, list(event.utterance_ids),
            event.event_id, *prov,
        )  # fmt: skip
    return None

"""Contract tests: every example payload decodes, round-trips, is registered for its topic, and every
processor that consumes its topic accepts it."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import palaver.events
from merger.processor import apply, new_state
from palaver import ids
from palaver.events import (
    ActionItemEditedV1,
    AudioFrameV1,
    ChatMessageV1,
    DecodeError,
    DialogueEditedV1,
    DialogueUpdateV1,
    StreamStartedV1,
    StreamStoppedV1,
    TranscriptEditedV1,
    TranscriptFinalV1,
    TranscriptPartialV1,
    UserChangedV1,
    decode,
    encode,
)
from palaver.events.audio_frame_v1 import AUDIO_EVENT
from palaver.events.codec import dumps
from palaver.events.registry import TOPICS, all_topics
from palaver.store.rows import COLUMNS, Provenance, rows_for
from stt_workers.processor import StreamInfo, StreamState
from stt_workers.segmenter import Segmenter, SegmenterPolicy
from stt_workers.vad import CONTEXT, WINDOW

EXAMPLES = Path(palaver.events.__file__).parent / "examples"
MEETING_PAUSE_MS = 1500


@dataclass(frozen=True)
class Example:
    path: Path
    topic: str
    event: str
    version: int
    raw: bytes

    @property
    def schema(self) -> str:
        return f"{self.event}/{self.version}"

    @property
    def is_frame(self) -> bool:
        return self.event == AUDIO_EVENT


def _load_examples() -> list[Example]:
    out = []
    for path in sorted(EXAMPLES.glob("*/*/*.json")):
        schema_dir, topic = path.parent.name, path.parent.parent.name
        event, _, version = schema_dir.rpartition("-v")
        out.append(Example(path, topic, event, int(version), path.read_bytes()))
    return out


ALL_EXAMPLES = _load_examples()
BY_ID = {str(e.path.relative_to(EXAMPLES)): e for e in ALL_EXAMPLES}
JSON_EXAMPLES = [k for k, e in BY_ID.items() if not e.is_frame]
FRAME_EXAMPLES = [k for k, e in BY_ID.items() if e.is_frame]


def _frame(example: Example) -> AudioFrameV1:
    obj = orjson.loads(example.raw)
    headers = {k: v.encode() for k, v in obj["headers"].items()}
    return AudioFrameV1.from_kafka(base64.b64decode(obj["pcm_base64"]), headers)


def _zero_scorer(windows: np.ndarray) -> np.ndarray:
    assert windows.shape[1:] == (CONTEXT + WINDOW,)
    return np.zeros(len(windows), np.float32)


def _segmenter(first_sample: int) -> Segmenter:
    return Segmenter(_zero_scorer, SegmenterPolicy(), first_sample)


# --- layout ----------------------------------------------------------------------------------------------


def test_examples_exist_and_only_json_and_readme() -> None:
    assert ALL_EXAMPLES, f"no examples under {EXAMPLES}"
    assert (EXAMPLES / "README.md").is_file()
    stray = [p for p in EXAMPLES.rglob("*") if p.is_file() and p.name != "README.md" and p.suffix != ".json"]
    assert stray == []
    nested_wrongly = [p for p in EXAMPLES.rglob("*.json") if len(p.relative_to(EXAMPLES).parts) != 3]
    assert nested_wrongly == []


def test_every_registered_schema_has_an_example() -> None:
    have = {(e.topic, e.schema) for e in ALL_EXAMPLES}
    missing = [(t.name, s) for t in TOPICS for s in t.schemas if (t.name, s) not in have]
    assert missing == []


def test_dead_letter_topics_carry_their_source_schemas() -> None:
    sources = {t.dlq: t for t in TOPICS if t.dlq}
    dlqs = [t for t in all_topics() if t.name in sources]
    assert {t.name for t in dlqs} == set(sources)
    for dlq in dlqs:
        assert dlq.schemas == sources[dlq.name].schemas


@pytest.mark.parametrize("key", list(BY_ID))
def test_example_is_registered_for_its_topic(key: str) -> None:
    example = BY_ID[key]
    specs = {t.name: t for t in TOPICS}
    assert example.topic in specs, f"{key}: unknown topic {example.topic}"
    assert example.schema in specs[example.topic].schemas


# --- decode and round trip -------------------------------------------------------------------------------


@pytest.mark.parametrize("key", JSON_EXAMPLES)
def test_json_example_decodes_and_round_trips(key: str) -> None:
    example = BY_ID[key]
    event = decode(example.raw)
    assert (event.event, event.version) == (example.event, example.version)
    encoded = encode(event)
    assert decode(encoded) == event
    # The file holds exactly what the codec writes: no missing defaults, no extra fields.
    assert orjson.loads(encoded) == orjson.loads(example.raw)
    # The codec writes with pydantic's serializer for speed: byte for byte what orjson writes of the dump.
    assert encoded == dumps(event.model_dump(mode="json"))


@pytest.mark.parametrize("key", FRAME_EXAMPLES)
def test_frame_example_decodes_and_round_trips(key: str) -> None:
    example = BY_ID[key]
    obj = orjson.loads(example.raw)
    assert set(obj) == {"headers", "pcm_base64"}
    assert all(isinstance(v, str) for v in obj["headers"].values())
    frame = _frame(example)
    assert frame.num_samples > 0
    assert {k: v.decode() for k, v in frame.kafka_headers()} == obj["headers"]
    again = AudioFrameV1.from_kafka(frame.pcm, dict(frame.kafka_headers()))
    assert again == frame


@pytest.mark.parametrize("key", list(BY_ID))
def test_example_ids_are_derived_like_production(key: str) -> None:
    example = BY_ID[key]
    event: Any = _frame(example) if example.is_frame else decode(example.raw)
    if not isinstance(event, UserChangedV1):  # users belong to no meeting
        assert ids.is_valid_id_part(event.meeting_id)
    if hasattr(event, "speaker_id"):
        assert ids.is_valid_id_part(event.speaker_id)
    if hasattr(event, "edit_id"):
        assert event.event_id == ids.event_id("edit", event.edit_id)
    if isinstance(event, TranscriptPartialV1):
        assert event.utterance_id.startswith("utt_")
        assert event.event_id == ids.event_id(
            "transcript.partial", event.utterance_id, event.run, event.sequence
        )
    if hasattr(event, "stream_id"):
        assert event.stream_id == ids.stream_id(event.meeting_id, event.speaker_id)
    if isinstance(event, TranscriptFinalV1):
        assert event.utterance_id == ids.utterance_id(event.stream_id, event.start_sample)
        assert event.event_id == ids.event_id("transcript.final", event.utterance_id, event.run)
        assert event.run == f"{event.engine}:{event.model}"
    if isinstance(event, DialogueUpdateV1):
        assert event.event_id == ids.event_id("dialogue.update", event.dialogue_id, event.run, event.revision)
        if event.status != "retracted":
            assert event.dialogue_id == ids.dialogue_id(event.meeting_id, event.utterance_ids[0])
    if isinstance(event, StreamStartedV1):
        assert event.event_id == ids.event_id("stream.started", event.stream_id, event.first_sample)
    if isinstance(event, StreamStoppedV1):
        assert event.event_id == ids.event_id("stream.stopped", event.stream_id, event.end_sample)
    if isinstance(event, UserChangedV1):
        assert event.user_id.startswith("usr_")
        assert event.event_id == ids.event_id("user.changed", event.user_id, event.user_version)
        assert event.password_hash.startswith("scrypt$")
    if isinstance(event, ChatMessageV1):
        assert event.message_id.startswith("msg_") and event.user_id.startswith("usr_")
        assert event.event_id == ids.event_id("chat.message", event.message_id)
        if event.idempotency_key is not None:
            key = event.idempotency_key
            assert event.message_id == ids.chat_message_id(event.meeting_id, event.user_id, key)


KEYED_EXAMPLES = [k for k in JSON_EXAMPLES if "idempotency_key" in orjson.loads(BY_ID[k].raw)]


def test_some_examples_carry_an_idempotency_key() -> None:
    keyed = [k for k in KEYED_EXAMPLES if orjson.loads(BY_ID[k].raw)["idempotency_key"] is not None]
    assert {BY_ID[k].event for k in keyed} >= {"chat.message", "dialogue.edited"}


@pytest.mark.parametrize("key", KEYED_EXAMPLES)
def test_payload_from_before_the_idempotency_key_still_decodes(key: str) -> None:
    """Events written before ``idempotency_key`` existed have no such field: they decode with None."""
    old = {k: v for k, v in orjson.loads(BY_ID[key].raw).items() if k != "idempotency_key"}
    event = decode(orjson.dumps(old))
    assert event.idempotency_key is None  # type: ignore[attr-defined]
    assert event.model_dump(exclude={"idempotency_key"}) == old


# --- consumers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [k for k in JSON_EXAMPLES if BY_ID[k].topic == "transcripts"])
def test_transcripts_examples_through_merger(key: str) -> None:
    event = decode(BY_ID[key].raw)
    meeting_id = event.meeting_id  # type: ignore[attr-defined]
    before = new_state()
    state, updates = apply(meeting_id, before, event, pause_ms=MEETING_PAUSE_MS)
    assert before == new_state(), "apply must not mutate its input state"
    assert set(state) == {"runs"}
    orjson.dumps(state)  # the state lives in a changelog table: it must stay JSON-able
    for update in updates:
        assert decode(encode(update)) == update
    if isinstance(event, TranscriptFinalV1 | TranscriptPartialV1):
        (update,) = updates
        assert isinstance(update, DialogueUpdateV1)
        assert update.status == "live"
        assert update.utterance_ids == (event.utterance_id,)
        assert update.dialogue_id == ids.dialogue_id(meeting_id, event.utterance_id)
        assert (update.start_ms, update.text, update.run) == (event.start_ms, event.text, event.run)
    else:
        assert updates == []


@pytest.mark.parametrize(
    "key",
    [k for k in JSON_EXAMPLES if BY_ID[k].topic in ("transcripts", "dialogues", "edits", "users", "chat")],
)
def test_examples_through_store_rows(key: str) -> None:
    example = BY_ID[key]
    event = decode(example.raw)
    out = rows_for(event, Provenance(topic=example.topic, partition=3, offset=42))
    expected = {
        TranscriptFinalV1: ["utterances"],
        DialogueUpdateV1: ["dialogues"],
        StreamStartedV1: ["participants", "meetings"],
        DialogueEditedV1: ["edits"],
        TranscriptEditedV1: ["edits"],
        ActionItemEditedV1: ["edits"],
        UserChangedV1: ["users"],
        ChatMessageV1: ["chat_messages"],
    }.get(type(event), [])
    assert [table for table, _ in out] == expected
    for table, row in out:
        assert len(row) == len(COLUMNS[table])
        named = dict(zip(COLUMNS[table], row, strict=True))
        assert (named["kafka_topic"], named["kafka_partition"], named["kafka_offset"]) == (
            example.topic,
            3,
            42,
        )
        assert named["event_id"] == event.event_id  # type: ignore[attr-defined]
        if isinstance(event, TranscriptFinalV1):
            assert orjson.loads(named["words"]) == [w.model_dump() for w in event.words]
        if isinstance(event, DialogueUpdateV1):
            assert named["dialogue_text"] == event.text
            assert named["utterance_ids"] == list(event.utterance_ids)
            assert named["transcript_id"] == ids.transcript_id(event.meeting_id, event.run)
        if table in ("edits", "chat_messages"):
            assert named["idempotency_key"] == (event.idempotency_key or "")  # type: ignore[attr-defined]
        if table == "edits":
            assert named["edit_id"] == event.edit_id  # type: ignore[attr-defined]
        if isinstance(event, UserChangedV1):
            assert (named["user_id"], named["version"], named["deleted"]) == (event.user_id, event.user_version,
                                                                             int(event.deleted))  # fmt: skip
            assert int(named["updated_at"].timestamp() * 1000) == event.updated_at_ms
        if isinstance(event, ChatMessageV1):
            assert (named["message_id"], named["text"], named["version"]) == (event.message_id, event.text, 1)
            assert int(named["sent_at"].timestamp() * 1000) == event.sent_at_ms


@pytest.mark.parametrize("key", [k for k in BY_ID if BY_ID[k].topic == "audio.frames"])
def test_audio_frames_examples_through_stt_processor(key: str) -> None:
    example = BY_ID[key]
    if example.is_frame:
        frame = _frame(example)
        info = StreamInfo(
            frame.meeting_id, frame.speaker_id, frame.stream_id, frame.sample_rate, frame.stream_start_ms
        )
        state = StreamState(info=info, segmenter=_segmenter(frame.first_sample), partition=0)
        segments = state.accept(frame, 17, _segmenter)
        assert segments == []
        assert state.segmenter.end_sample == frame.end_sample
        assert state.committable_offset() == 17
        assert state.accept(frame, 18, _segmenter) == []  # the same frame again is skipped
        assert state.segmenter.end_sample == frame.end_sample
        return
    event = decode(example.raw)
    if isinstance(event, StreamStartedV1):
        info = StreamInfo(
            event.meeting_id, event.speaker_id, event.stream_id, event.sample_rate, event.stream_start_ms
        )
        state = StreamState(info=info, segmenter=_segmenter(event.first_sample), partition=0)
        assert state.segmenter.end_sample == event.first_sample
        assert state.committable_offset() is None
    else:
        assert isinstance(event, StreamStoppedV1)
        segmenter = _segmenter(0)
        segmenter.push(np.zeros(min(event.end_sample, 16000), np.float32))
        assert segmenter.flush() == []


# --- decode errors ---------------------------------------------------------------------------------------


def _valid_transcript() -> dict[str, Any]:
    return orjson.loads(BY_ID["transcripts/transcript.final-v1/alice-greeting.json"].raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\xff\xfe not json",
        b"{\"event\": ",
        b"[1, 2, 3]",
        b"\"transcript.final\"",
        b"42",
        b"null",
        orjson.dumps({"event": "transcript.partial", "version": 1}),
        orjson.dumps({"event": "transcript.final", "version": 2}),
        orjson.dumps({"event": "transcript.final", "version": "1"}),
        orjson.dumps({"version": 1}),
        orjson.dumps({k: v for k, v in _valid_transcript().items() if k != "utterance_id"}),
        orjson.dumps({**_valid_transcript(), "start_ms": "soon"}),
        orjson.dumps({**_valid_transcript(), "unexpected": 1}),
        orjson.dumps({**_valid_transcript(), "words": [{"word": "hi"}]}),
    ],
    ids=[
        "empty", "garbage", "truncated", "array", "string", "number", "null", "unknown-event",
        "unknown-version", "version-as-string", "no-event", "missing-field", "wrong-type", "extra-field",
        "bad-word",
    ],
)  # fmt: skip
def test_decode_rejects(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(raw)


def test_decode_accepts_str_and_bytes() -> None:
    raw = BY_ID["transcripts/transcript.final-v1/alice-greeting.json"].raw
    assert decode(raw) == decode(raw.decode())

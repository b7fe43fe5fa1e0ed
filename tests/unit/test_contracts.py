"""Contract tests, driven by the topic registry (palaver/events/registry.py).

- Every example payload (palaver/events/examples/<topic>/<event>-v<n>/) is an event the registry lists
  for its topic, and every event the registry lists for a topic has an example there.
- Every example decodes with the codec (or, for an audio frame, ``AudioFrameV1.from_kafka``) into exactly
  the registered class, and re-encodes to the same JSON.
- Every example goes through the real processing function of every consumer the registry names for its
  topic (``CONTRACTS``): the STT worker's frame handling, ``merger.processor.apply``,
  ``palaver.store.rows.rows_for`` and the live hub's ``process``. Each must make something sensible of it,
  and each consumer must make something of at least one example of every topic it is said to consume. A
  consumer added to the registry without a contract here fails, and so does an example without one.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import importlib
import pkgutil
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import orjson
import pytest
from aiokafka.structs import ConsumerRecord

import api.name_registry
import enrichment.replay as enrich_replay
import merger.app
import merger.replay as merger_replay
import palaver.events
import palaver.store.writer
import stt_workers.pipeline
from api.chat import ChatMessageOut
from api.live import LiveHub
from api.name_claims import NameClaims
from api.names import decide, names_in_use, user_names
from enrichment.progress import new_progress, note_dialogues, note_request
from enrichment.webhooks import GROUP as WEBHOOKS_GROUP
from enrichment.webhooks_message import payload_body, webhook_payload
from ingest.clock import StreamMark, Timeline
from ingest.clock import ended as timeline_ended
from ingest.clock import merge as timeline_merge
from ingest.clock import place as timeline_place
from merger.processor import apply, new_state
from palaver import ids
from palaver.check.audio import AudioSeen
from palaver.check.transcripts import final_seen
from palaver.events import (
    ActionItemEditedV1,
    AudioFrameV1,
    ChatMessageV1,
    DecodeError,
    DialogueEditedV1,
    DialogueUpdateV1,
    MeetingChangedV1,
    MeetingLinkV1,
    MeetingMemberV1,
    MeetingWatermarkV1,
    SessionRevokedV1,
    StreamProgressV1,
    StreamStartedV1,
    StreamStoppedV1,
    TranscriptEditedV1,
    TranscriptFinalV1,
    TranscriptPartialV1,
    UserChangedV1,
    decode,
    decode_on,
    encode,
)
from palaver.events.audio_frame_v1 import AUDIO_EVENT, event_type
from palaver.events.base import EventV
from palaver.events.codec import SCHEMAS, dumps
from palaver.events.insights_v1 import EnrichmentRequestedV1, MeetingInsightsV1, SummaryChunkV1
from palaver.events.meeting_vocabulary_v1 import MeetingVocabularyV1
from palaver.events.name_claims_v1 import NameClaimV1, NameDecisionV1, NameReleaseV1
from palaver.events.registry import (
    LIVE,
    MEETINGS,
    MERGER,
    NAMES,
    STATE_TOPICS,
    STORE,
    STT,
    TOOLS,
    TOPICS,
    WEBHOOKS,
    EventClass,
    TopicSpec,
    json_event_classes,
    schema_of,
    topics_produced_by,
)
from palaver.settings import Settings
from palaver.store.rows import COLUMNS, Provenance, rows_for
from stack.services import SERVICES
from stt_workers import processor as stt_processor
from stt_workers.processor import MAX_GAP_SAMPLES, StreamInfo, StreamState, continue_pcm
from stt_workers.replay_scan import MeetingAudio
from stt_workers.segmenter import Segmenter, SegmenterPolicy
from stt_workers.vad import CONTEXT, WINDOW
from stt_workers.vocabulary_follower import Vocabularies

EXAMPLES = Path(palaver.events.__file__).parent / "examples"
MERGER_PAUSE_MS = 1500
SPECS = {spec.name: spec for spec in (*TOPICS, *STATE_TOPICS)}


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

    @property
    def registered_class(self) -> EventClass | None:
        """The class the registry lists for this example's topic, event and version (None: none)."""
        spec = SPECS.get(self.topic)
        classes = {schema_of(cls): cls for cls in spec.events} if spec else {}
        return classes.get((self.event, self.version))


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


def _kafka_message(example: Example) -> tuple[bytes, dict[str, bytes]]:
    """The example as a consumer receives it: the message value and headers. A frame's example holds both;
    a JSON event is its value, with the ``event`` and ``version`` headers its producer writes."""
    if example.is_frame:
        obj = orjson.loads(example.raw)
        return base64.b64decode(obj["pcm_base64"]), {k: v.encode() for k, v in obj["headers"].items()}
    return example.raw, {"event": example.event.encode(), "version": str(example.version).encode()}


def _event(example: Example) -> Any:
    value, headers = _kafka_message(example)
    return AudioFrameV1.from_kafka(value, headers) if example.is_frame else decode(value)


def _produced_by(service: str) -> set[EventClass]:
    return {cls for spec in topics_produced_by(service) for cls in spec.events}


# --- the registry against the examples and the code ------------------------------------------------------


def test_examples_exist_and_only_json_and_readme() -> None:
    assert ALL_EXAMPLES, f"no examples under {EXAMPLES}"
    assert (EXAMPLES / "README.md").is_file()
    stray = [p for p in EXAMPLES.rglob("*") if p.is_file() and p.name != "README.md" and p.suffix != ".json"]
    assert stray == []
    nested_wrongly = [p for p in EXAMPLES.rglob("*.json") if len(p.relative_to(EXAMPLES).parts) != 3]
    assert nested_wrongly == []


def test_every_registered_event_has_an_example() -> None:
    have = {(e.topic, e.registered_class) for e in ALL_EXAMPLES}
    missing = [f"{t.name}: {cls.__name__}" for t in TOPICS for cls in t.events if (t.name, cls) not in have]
    assert missing == [], "add an example under palaver/events/examples/<topic>/<event>-v<n>/"


@pytest.mark.parametrize("key", list(BY_ID))
def test_example_is_a_registered_event_of_its_topic(key: str) -> None:
    example = BY_ID[key]
    assert example.topic in {t.name for t in TOPICS}, f"{key}: {example.topic} is not an event topic"
    cls = example.registered_class
    assert cls is not None, f"{key}: {example.schema} is not registered for {example.topic}"
    assert type(_event(example)) is cls


def _event_classes_defined_in(module: ModuleType) -> set[type]:
    return {
        cls for cls in vars(module).values()
        if isinstance(cls, type) and cls.__module__ == module.__name__
        and (cls is AudioFrameV1 or (issubclass(cls, EventV) and cls is not EventV))
    }  # fmt: skip


def test_every_event_class_is_registered_on_a_topic() -> None:
    """An event module nobody registered would be a class no codec decodes and no consumer expects."""
    registered = {cls for spec in TOPICS for cls in spec.events}
    names = [m.name for m in pkgutil.iter_modules(palaver.events.__path__)]
    modules = [importlib.import_module(f"palaver.events.{name}") for name in names]
    defined = {cls for module in modules for cls in _event_classes_defined_in(module)}
    assert {cls.__name__ for cls in defined - registered} == set()
    assert registered <= defined


def test_the_codec_decodes_exactly_the_registered_json_events() -> None:
    registered = {cls for spec in TOPICS for cls in spec.events if issubclass(cls, EventV)}
    assert set(SCHEMAS.values()) == registered
    assert all(schema_of(cls) == key for key, cls in SCHEMAS.items())


def test_two_classes_cannot_claim_one_event_version() -> None:
    class OtherFinalV1(TranscriptFinalV1):
        pass

    clash = TopicSpec("x", "meeting_id", 1, -1, "delete", (TranscriptFinalV1, OtherFinalV1), ("stt",), ())
    with pytest.raises(ValueError, match=r"transcript\.final/1 is claimed by TranscriptFinalV1 and Other"):
        json_event_classes((clash,))


def test_producers_and_consumers_are_services() -> None:
    for spec in (*TOPICS, *STATE_TOPICS):
        assert set(spec.producers) <= {*SERVICES, *TOOLS}, spec.name
        assert {c.service for c in spec.consumers} <= {*SERVICES, *TOOLS}, spec.name


def test_consumer_groups_are_the_services_groups() -> None:
    assert (STT.group, MERGER.group, STORE.group) == (
        stt_workers.pipeline.GROUP,
        merger.app.GROUP,
        palaver.store.writer.GROUP,
    )
    assert LIVE.group is None  # api/live.py reads without a group, from the end
    assert NAMES.group == api.name_registry.GROUP
    assert WEBHOOKS.group == WEBHOOKS_GROUP


def _event_classes(annotation: Any) -> set[type]:
    """The event classes named anywhere in a type annotation (``tuple[X, list[A | B]]`` -> {A, B})."""
    if isinstance(annotation, type) and issubclass(annotation, EventV):
        return {annotation}
    return {cls for arg in typing.get_args(annotation) for cls in _event_classes(arg)}


@pytest.mark.parametrize(
    ("service", "function"),
    [
        ("merger", apply),
        ("stt", stt_processor.final_event),
        ("stt", stt_processor.partial_event),
        ("stt", stt_processor.progress_event),
    ],
)
def test_processors_return_events_their_service_produces(service: str, function: Callable[..., Any]) -> None:
    name, returned = function.__name__, _event_classes(typing.get_type_hints(function)["return"])
    assert returned, f"{name} names no event class"
    assert returned <= _produced_by(service), f"{name} returns events no topic of {service} carries"


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
    frame = _event(example)
    assert frame.num_samples > 0
    assert {k: v.decode() for k, v in frame.kafka_headers()} == obj["headers"]
    again = AudioFrameV1.from_kafka(frame.pcm, dict(frame.kafka_headers()))
    assert again == frame


@pytest.mark.parametrize("key", list(BY_ID))
def test_example_ids_are_derived_like_production(key: str) -> None:
    event: Any = _event(BY_ID[key])
    if not isinstance(event, UserChangedV1 | SessionRevokedV1 | NameClaimV1 | NameReleaseV1 | NameDecisionV1):
        # users, sign-ins and names belong to no meeting
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
    if isinstance(event, MeetingChangedV1):
        assert event.event_id == ids.event_id("meeting.changed", event.meeting_id, event.meeting_version)
    if isinstance(event, MeetingMemberV1):
        assert event.event_id == ids.event_id("meeting.member", event.meeting_id, event.user_id,
                                              event.member_version)  # fmt: skip
    if isinstance(event, MeetingLinkV1):
        assert event.event_id == ids.event_id("meeting.link", event.meeting_id, event.link_id, event.link_version)
    if isinstance(event, MeetingVocabularyV1):
        assert event.event_id == ids.event_id("meeting.vocabulary", event.meeting_id, event.vocabulary_version)
    if isinstance(event, SessionRevokedV1):
        assert event.event_id == ids.event_id("session.revoked", event.session_id)
    if isinstance(event, StreamStartedV1):
        assert event.event_id == ids.event_id("stream.started", event.stream_id, event.first_sample)
    if isinstance(event, StreamStoppedV1):
        assert event.event_id == ids.event_id("stream.stopped", event.stream_id, event.end_sample)
    if isinstance(event, UserChangedV1):
        assert event.user_id.startswith("usr_")
        assert event.event_id == ids.event_id("user.changed", event.user_id, event.user_version)
        assert event.password_hash.startswith("scrypt$")
    if isinstance(event, NameClaimV1 | NameReleaseV1 | NameDecisionV1):
        assert event.user_id.startswith("usr_")
        assert event.event_id == ids.event_id(event.event, event.request_id)
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


DIALOGUE_EXAMPLES = [k for k in JSON_EXAMPLES if BY_ID[k].event == "dialogue.update"]


@pytest.mark.parametrize("key", DIALOGUE_EXAMPLES)
def test_dialogue_update_from_before_utterances_still_decodes(key: str) -> None:
    """Dialogue events written before ``utterances`` existed have no such field: they decode with none."""
    old = {k: v for k, v in orjson.loads(BY_ID[key].raw).items() if k != "utterances"}
    event = decode(orjson.dumps(old))
    assert isinstance(event, DialogueUpdateV1) and event.utterances == ()
    assert event.model_dump(mode="json", exclude={"utterances"}) == old


@pytest.mark.parametrize("key", DIALOGUE_EXAMPLES)
def test_dialogue_update_from_before_placed_still_decodes(key: str) -> None:
    """Dialogue events written before ``placed`` existed were final only once the watermark had passed
    them: they decode placed when final."""
    old = {k: v for k, v in orjson.loads(BY_ID[key].raw).items() if k != "placed"}
    event = decode(orjson.dumps(old))
    assert isinstance(event, DialogueUpdateV1) and event.placed == (old["status"] == "final")
    assert event.model_dump(mode="json", exclude={"placed"}) == old


def test_dialogue_examples_show_final_words_placed_and_not() -> None:
    finals = [orjson.loads(BY_ID[k].raw) for k in DIALOGUE_EXAMPLES if orjson.loads(BY_ID[k].raw)["status"] == "final"]
    assert {d["placed"] for d in finals} == {True, False}
    assert not any(orjson.loads(BY_ID[k].raw)["placed"] for k in DIALOGUE_EXAMPLES
                   if orjson.loads(BY_ID[k].raw)["status"] != "final"), "only final dialogues are placed"  # fmt: skip


def test_dialogue_examples_show_settled_and_tentative_words() -> None:
    shown = {u["final"] for k in DIALOGUE_EXAMPLES for u in orjson.loads(BY_ID[k].raw)["utterances"]}
    assert shown == {True, False}


# --- consumers: each returns what it made of one example (empty: it had nothing to do with it) ----------


def _silence_scorer(windows: np.ndarray, state: None) -> tuple[np.ndarray, None]:
    assert windows.shape[1:] == (CONTEXT + WINDOW,)
    return np.zeros(len(windows), np.float32), state


def _open_stream(info: StreamInfo, first_sample: int) -> StreamState:
    """A stream as the local STT path opens it (``LocalTranscriber.open``): a segmenter from ``first_sample``
    (with a VAD that hears silence: the examples are far shorter than an utterance anyway)."""
    policy = SegmenterPolicy(sample_rate=info.sample_rate)
    return StreamState(info, Segmenter(_silence_scorer, policy, first_sample), partition=0)


def _new_segmenter(first_sample: int) -> Segmenter:
    return Segmenter(_silence_scorer, SegmenterPolicy(), first_sample)


def _stream_frames(stream_id: str) -> list[AudioFrameV1]:
    frames = [_event(BY_ID[k]) for k in FRAME_EXAMPLES]
    return sorted((f for f in frames if f.stream_id == stream_id), key=lambda f: f.first_sample)


def _stt_frame(frame: AudioFrameV1) -> list[Any]:
    # A worker that does not hold the stream yet opens it at the frame (pipeline ``_on_frame``).
    info = StreamInfo(frame.meeting_id, frame.speaker_id, frame.stream_id, frame.sample_rate,
                      frame.stream_start_ms, frame.language or "en")  # fmt: skip
    state = _open_stream(info, frame.first_sample)
    assert state.accept(frame, 17, _new_segmenter) == []  # far shorter than an utterance
    assert state.segmenter.end_sample == frame.end_sample  # the whole frame, nothing skipped or padded
    assert state.committable_offset() == 17  # its audio is still needed: the commit waits for it
    assert state.accept(frame, 18, _new_segmenter) == []  # the same frame again (a redelivery) is skipped
    assert state.segmenter.end_sample == frame.end_sample
    # The cloud path sends a held stream's new audio on: all of it, then none of it again.
    assert continue_pcm(frame.first_sample, frame) == (frame.pcm, None)
    assert continue_pcm(frame.end_sample, frame) == (b"", None)
    return [frame.pcm]


def _stt_lifecycle(event: StreamStartedV1 | StreamStoppedV1) -> list[Any]:
    # The worker forwards the event to the transcripts topic, in order with the stream's transcripts.
    assert type(event) in _produced_by("stt")
    frames = _stream_frames(event.stream_id)
    if isinstance(event, StreamStartedV1):
        info = StreamInfo(event.meeting_id, event.speaker_id, event.stream_id, event.sample_rate,
                          event.stream_start_ms, event.language or "en")  # fmt: skip
        state = _open_stream(info, event.first_sample)
        assert state.committable_offset() is None  # no audio yet, nothing holds the commit back
        # The stream's frames continue it: same stream facts, no hole wide enough to restart segmentation.
        for offset, frame in enumerate(frames):
            assert (frame.meeting_id, frame.speaker_id, frame.sample_rate, frame.stream_start_ms) == (
                event.meeting_id, event.speaker_id, event.sample_rate, event.stream_start_ms)  # fmt: skip
            assert frame.language == event.language
            assert frame.first_sample - state.segmenter.end_sample <= MAX_GAP_SAMPLES
            state.accept(frame, offset, _new_segmenter)
            assert state.segmenter.end_sample == frame.end_sample
    else:
        # The stop lies after the audio it ends: the stream's remaining segments are flushed before it.
        assert all(frame.end_sample <= event.end_sample for frame in frames)
    return [event]


def stt_contract(example: Example) -> list[Any]:
    """The STT worker on the audio topic (stt_workers/pipeline.py ``_handle``): the header tells a raw frame
    from a JSON lifecycle event; frames feed the stream's segmenter (local path, ``StreamState.accept``) or
    its streaming session (cloud path, ``continue_pcm``)."""
    value, headers = _kafka_message(example)
    if event_type(headers) == AUDIO_EVENT:
        return _stt_frame(AudioFrameV1.from_kafka(value, headers))
    event = decode(value)
    assert isinstance(event, StreamStartedV1 | StreamStoppedV1), "the worker dead-letters anything else"
    return _stt_lifecycle(event)


def _meeting_so_far(meeting_id: str) -> dict[str, Any]:
    """The merger's state after every final transcript example of the meeting (each carries its run)."""
    state = new_state()
    for key in JSON_EXAMPLES:
        event = decode(BY_ID[key].raw)
        if isinstance(event, TranscriptFinalV1) and event.meeting_id == meeting_id:
            state, _ = apply(meeting_id, state, event, MERGER_PAUSE_MS)
    return state


def _merge(meeting_id: str, before: dict[str, Any], event: Any) -> tuple[dict[str, Any], list[Any]]:
    untouched = copy.deepcopy(before)
    state, updates = apply(meeting_id, before, event, MERGER_PAUSE_MS)
    assert before == untouched, "apply must not mutate its input state"
    for update in updates:
        assert type(update) in _produced_by("merger")
        assert update.meeting_id == meeting_id
        assert decode(encode(update)) == update
    # A redelivery (at-least-once) after the merge changes no dialogue.
    assert apply(meeting_id, state, event, MERGER_PAUSE_MS)[1] == []
    return state, updates


def merger_contract(example: Example) -> list[Any]:
    """``merger.processor.apply`` on a fresh meeting and on the meeting after the example finals (an event
    without a run applies to every run the meeting has, so it needs a meeting that has one)."""
    event = decode(example.raw)
    meeting_id = event.meeting_id  # type: ignore[attr-defined]
    _, fresh = _merge(meeting_id, new_state(), event)
    if isinstance(event, TranscriptFinalV1 | TranscriptPartialV1):
        (update,) = fresh
        assert isinstance(update, DialogueUpdateV1)
        assert update.status == "live"
        assert update.utterance_ids == (event.utterance_id,)
        assert update.dialogue_id == ids.dialogue_id(meeting_id, event.utterance_id)
        assert (update.start_ms, update.text, update.run) == (event.start_ms, event.text, event.run)
        (utterance,) = update.utterances
        assert (utterance.utterance_id, utterance.start_ms, utterance.end_ms, utterance.text, utterance.final) == (
            event.utterance_id, event.start_ms, event.end_ms, event.text, isinstance(event, TranscriptFinalV1))  # fmt: skip
    _, later = _merge(meeting_id, _meeting_so_far(meeting_id), event)
    if isinstance(event, StreamStoppedV1) and later:
        # A stopped stream no longer holds the watermark back: its dialogues can become final.
        assert any(isinstance(u, DialogueUpdateV1) and u.status == "final" for u in later)
    return [*fresh, *later]


def merger_state_contract(example: Example) -> list[Any]:
    """The merger's state goes through its changelog (palaver/streams/changelog.py writes it with
    ``orjson.dumps``, a restore reads it with ``orjson.loads``): it comes back equal, and a merger restored
    from it recognises the event as seen."""
    event = decode(example.raw)
    meeting_id = event.meeting_id  # type: ignore[attr-defined]
    out = []
    for before in (new_state(), _meeting_so_far(meeting_id)):
        state, _ = apply(meeting_id, before, event, MERGER_PAUSE_MS)
        if state is before:
            continue
        restored = orjson.loads(orjson.dumps(state))
        assert restored == state
        assert apply(meeting_id, restored, event, MERGER_PAUSE_MS)[1] == []
        out.append(restored)
    return out


# The tables the store writer keeps each event in (``rows_for``); every event of a topic it consumes must
# be listed, so a new one is a decision. Watermarks and edits also trigger transcript rebuilds (I/O, in
# palaver/store/writer.py).
STORE_TABLES: dict[type, tuple[str, ...]] = {
    TranscriptFinalV1: ("utterances",),
    TranscriptPartialV1: (),
    StreamStartedV1: ("participants", "meetings"),
    StreamStoppedV1: (),
    StreamProgressV1: (),
    DialogueUpdateV1: ("dialogues",),
    MeetingWatermarkV1: (),
    DialogueEditedV1: ("edits",),
    TranscriptEditedV1: ("edits",),
    ActionItemEditedV1: ("edits",),
    UserChangedV1: ("users",),
    ChatMessageV1: ("chat_messages",),
    MeetingChangedV1: ("meetings",),
    MeetingMemberV1: ("meeting_members",),
    MeetingLinkV1: ("meeting_links",),
    SessionRevokedV1: ("revoked_sessions",),
    SummaryChunkV1: (),  # pushed to live pages; the whole summary comes with the result
}


def _store_tables(event: EventV) -> tuple[str, ...]:
    """The tables of STORE_TABLES, or of an enrichment result: the result, its two summaries, its items."""
    if isinstance(event, MeetingInsightsV1):
        return ("meeting_insights", "summaries", "summaries", *("action_items",) * len(event.action_items))
    return STORE_TABLES[type(event)]


def store_contract(example: Example) -> list[Any]:
    """``palaver.store.rows.rows_for``: rows that fit their tables and carry the event's provenance."""
    event: Any = decode(example.raw)
    out = rows_for(event, Provenance(topic=example.topic, partition=3, offset=42))
    assert type(event) in STORE_TABLES or isinstance(event, MeetingInsightsV1), (
        f"decide which tables the store keeps {type(event).__name__} in"
    )
    assert tuple(table for table, _ in out) == _store_tables(event)
    for table, row in out:
        assert len(row) == len(COLUMNS[table])
        named = dict(zip(COLUMNS[table], row, strict=True))
        provenance = (named["kafka_topic"], named["kafka_partition"], named["kafka_offset"])
        assert provenance == (example.topic, 3, 42)
        assert named["event_id"] == event.event_id
        if isinstance(event, TranscriptFinalV1):
            assert orjson.loads(named["words"]) == [w.model_dump() for w in event.words]
        if isinstance(event, DialogueUpdateV1):
            assert named["dialogue_text"] == event.text
            assert named["utterance_ids"] == list(event.utterance_ids)
            assert orjson.loads(named["utterances"]) == [u.model_dump() for u in event.utterances]
            assert named["transcript_id"] == ids.transcript_id(event.meeting_id, event.run)
        if table in ("edits", "chat_messages"):
            assert named["idempotency_key"] == (event.idempotency_key or "")  # type: ignore[attr-defined]
        if table == "edits":
            assert named["edit_id"] == event.edit_id
        if isinstance(event, UserChangedV1):
            assert (named["user_id"], named["version"], named["deleted"]) == (event.user_id, event.user_version,
                                                                             int(event.deleted))  # fmt: skip
            assert int(named["updated_at"].timestamp() * 1000) == event.updated_at_ms
        if isinstance(event, ChatMessageV1):
            assert (named["message_id"], named["text"], named["version"]) == (event.message_id, event.text, 1)
            assert int(named["sent_at"].timestamp() * 1000) == event.sent_at_ms
    return out


LIVE_TYPES: dict[type, str | None] = {
    DialogueUpdateV1: "dialogue",
    MeetingWatermarkV1: None,
    ChatMessageV1: "chat",
    MeetingMemberV1: "participant",
    MeetingChangedV1: "meeting",
    MeetingLinkV1: None,  # share links are the owner's to see
    SummaryChunkV1: "summary",
    MeetingInsightsV1: "insights",  # its action items inside (``task`` is reserved)
}


def live_contract(example: Example) -> list[Any]:
    """The live hub (api/live.py): each event of a topic it reads becomes the typed message its meeting's
    sockets get (a JSON object with the event's meeting and a ``type``), or none; no other meeting's
    sockets get it, and the next subscriber of the meeting gets it from the hub's memory."""
    event: Any = decode(example.raw)
    assert type(event) in LIVE_TYPES, f"decide what the live socket sends of {type(event).__name__}"
    hub = LiveHub(Settings())
    mine, other = hub.subscribe(event.meeting_id), hub.subscribe(f"not-{event.meeting_id}")
    hub.process(ConsumerRecord(example.topic, 0, 42, 0, 0, event.meeting_id.encode(), example.raw, None,
                               0, len(example.raw), ()))  # fmt: skip
    created = isinstance(event, MeetingChangedV1) and event.change == "created"  # sockets open on existing ones
    expected = None if created else LIVE_TYPES[type(event)]
    if expected is None:
        assert mine.queue.empty() and other.queue.empty() and hub.recent.recent(event.meeting_id) == []
        return []
    message = mine.queue.get_nowait()
    assert message is not None and mine.queue.empty() and other.queue.empty()
    body = orjson.loads(message.text)
    assert (message.type, body["type"], body["meeting_id"]) == (expected, expected, event.meeting_id)
    if isinstance(event, DialogueUpdateV1):
        assert {k: v for k, v in body.items() if k != "type"} == orjson.loads(example.raw)
    if isinstance(event, MeetingInsightsV1):
        assert {k: v for k, v in body.items() if k != "type"} == orjson.loads(example.raw)
    if isinstance(event, SummaryChunkV1):
        assert body == {"type": "summary", **event.model_dump(include={"meeting_id", "run", "enrichment_id", "seq",
                                                                       "text", "reset"})}  # fmt: skip
    if isinstance(event, ChatMessageV1):  # what GET .../chat returns of it
        assert body == {"type": "chat", **event.model_dump(include=set(ChatMessageOut.model_fields))}
    remembered = hub.recent.recent(event.meeting_id)
    assert remembered == ([] if message.close else [message])
    return [message]


OTHER_USER = "usr_" + "0" * 24


def names_contract(example: Example) -> list[Any]:
    """The name registry (``api.names.decide``) on a name never claimed, held by the requester, held by
    someone else, and replayed: claims are granted exactly when the name is free or the requester's,
    releases free only the owner's name, and a request at or before the state's offset changes nothing."""
    request: Any = decode(example.raw)
    assert isinstance(request, NameClaimV1 | NameReleaseV1)
    kind, _, value = request.name.partition(":")
    assert kind in ("username", "email") and value == value.lower() and value
    mine, theirs = {"owner": request.user_id, "offset": 3}, {"owner": OTHER_USER, "offset": 3}
    out = []
    for before, granted_if_claim, owner_after_release in ((None, True, None), (mine, True, None),
                                                          (theirs, False, OTHER_USER)):  # fmt: skip
        untouched = copy.deepcopy(before)
        decision = decide(before, request, 7)
        assert before == untouched, "decide must not mutate the state"
        assert decision.state is not None and decision.state["offset"] == 7
        if isinstance(request, NameClaimV1):
            assert decision.granted is granted_if_claim
            assert decision.state["owner"] == (request.user_id if granted_if_claim else OTHER_USER)
        else:
            assert decision.granted is None and decision.state["owner"] == owner_after_release
        assert decide(decision.state, request, 7).granted is None, "a replayed request is not decided again"
        out.append(decision)
    return out


def enrichment_contract(example: Example) -> list[Any]:
    """The enrichment service (enrichment/service.py): a live run's dialogue or watermark is the meeting's
    activity (a watermark also its placed dialogues); a request is kept until served, once however often
    it is delivered."""
    event: Any = decode(example.raw)
    before = new_progress()
    if isinstance(event, EnrichmentRequestedV1):
        after = note_request(before, event, 1000)
        assert after["pending"] == [{"request_id": event.event_id, "trigger": event.reason, "backend": event.backend,
                                     "since_ms": 1000, "dialogue_id": event.dialogue_id, "run": event.run}]  # fmt: skip
        assert note_request(after, event, 2000) is after
        return [after]
    after = note_dialogues(before, event, 1000)
    if after is before:
        return []  # a replay run: not the meeting's activity
    assert (after["run"], after["activity_ms"]) == (event.run, 1000)
    if isinstance(event, MeetingWatermarkV1):
        assert after["placed"] == event.final_dialogues
    return [after]


def webhooks_contract(example: Example) -> list[Any]:
    """The webhook sender (enrichment/webhooks.py): a meeting's final result becomes the payload it POSTs,
    what the result says about the meeting and nothing else; a rolling result and a summary chunk send
    nothing."""
    event: Any = decode(example.raw)
    payload = webhook_payload(event)
    rolling = isinstance(event, MeetingInsightsV1) and not event.final
    if not isinstance(event, MeetingInsightsV1) or rolling:
        assert payload is None
        if isinstance(event, MeetingInsightsV1):  # the same result made final would be sent
            assert webhook_payload(event.model_copy(update={"final": True})) is not None
        return []
    assert payload is not None
    assert orjson.loads(payload_body(payload)) == payload
    assert payload == {
        "event": "meeting.enriched", "meeting_id": event.meeting_id, "enrichment_id": event.enrichment_id,
        "run": event.run, "trigger": event.trigger, "revision": event.revision,
        "summary": {"brief": event.summary_brief, "detailed": event.summary_detailed},
        "action_items": orjson.loads(example.raw)["action_items"], "keywords": list(event.keywords),
        "produced_at_ms": event.produced_at_ms,
    }  # fmt: skip
    assert webhook_payload(event.model_copy(update={"final": False})) is None
    return [payload]


def enrichment_state_contract(example: Example) -> list[Any]:
    """Enrichment's progress goes through its changelog (orjson both ways) unchanged."""
    out = []
    for progress in enrichment_contract(example):
        restored = orjson.loads(orjson.dumps(progress))
        assert restored == progress
        out.append(restored)
    return out


def names_state_contract(example: Example) -> list[Any]:
    """The registry's state goes through its changelog (orjson both ways) unchanged, and a registry restored
    from it recognises the request as applied."""
    request: Any = decode(example.raw)
    state = decide(None, request, 11).state
    restored = orjson.loads(orjson.dumps(state))
    assert restored == state
    assert decide(restored, request, 11) == decide(state, request, 11)
    assert decide(restored, request, 11).granted is None
    return [restored]


def ingest_timelines_contract(example: Example) -> list[Any]:
    """The meetings' timelines (ingest/clock.py, ingest/timeline_log.py) hold what a stream's connections
    told: a ``stream.started``'s placement, written as a record and folded by a process that never saw it,
    places a resume of the stream where the event says; after a ``stream.stopped`` a fresh connection of
    the stream starts after its audio. Frames add nothing (placement is once per connection)."""
    value, headers = _kafka_message(example)
    if event_type(headers) == AUDIO_EVENT:
        return []
    event: Any = decode(value)
    epoch = event.timeline_epoch_ms if isinstance(event, StreamStartedV1) and event.timeline_epoch_ms else 1_000
    written = Timeline(epoch, {event.stream_id: StreamMark(event.stream_start_ms)}, epoch)
    if isinstance(event, StreamStoppedV1):
        written = timeline_ended(written, event.stream_id, event.end_sample, epoch)
    folded = timeline_merge(None, Timeline.from_json(orjson.loads(orjson.dumps(written.to_json()))))
    assert folded == written
    now_ms = epoch + event.stream_start_ms
    if isinstance(event, StreamStartedV1):
        resumed = timeline_place(folded, folded, event.stream_id, now_ms, max(1, event.first_sample), event.sample_rate)
        assert (resumed.stream_start_ms, resumed.epoch_ms) == (event.stream_start_ms, epoch)
    else:
        fresh = timeline_place(folded, folded, event.stream_id, now_ms, 0, event.sample_rate)
        assert fresh.first_sample >= event.end_sample
    return [folded]


def names_seed_contract(example: Example) -> list[Any]:
    """The registry's first start (``api.names.names_in_use``): a live user's username and email are taken
    by that user; a deleted user's are free."""
    event: Any = decode(example.raw)
    held = names_in_use([event])
    assert held == ({} if event.deleted else dict.fromkeys(user_names(event.username, event.email).values(),
                                                           event.user_id))  # fmt: skip
    return list(held)


def claimants_contract(example: Example) -> list[Any]:
    """An asker (``api.name_claims.NameClaims``, also inside `palaver admin`): a decision settles the request
    waiting for it with its answer, once; another asker's decision is left alone."""
    decision: Any = decode(example.raw)
    assert isinstance(decision, NameDecisionV1)

    async def settle() -> bool:
        claims = NameClaims(Settings(), producer=None)  # type: ignore[arg-type]
        waiting = claims.expect(decision.request_id)
        other = claims.expect("another-request")
        assert claims.settle(decision) and not claims.settle(decision)
        assert not other.done()
        return waiting.result()

    assert asyncio.run(settle()) is decision.granted
    return [decision.granted]


def replay_audio_contract(example: Example) -> list[Any]:
    """``palaver replay`` (stt_workers/replay.py) on the audio topic: its scan takes the record into the
    meeting's offsets and streams (``replay_scan.MeetingAudio.note``), then the STT worker's own step
    handles it (the STT contract)."""
    value, headers = _kafka_message(example)
    stream = headers["stream_id"].decode() if event_type(headers) == AUDIO_EVENT else decode(value).stream_id  # type: ignore[attr-defined]
    audio = MeetingAudio(stream.split("/")[0])
    audio.note(ConsumerRecord("audio.frames", 4, 42, 0, 0, stream.encode(), value, None, 0, len(value),
                              tuple(headers.items())))  # fmt: skip
    assert list(audio.streams) == [stream] and list(audio.ranges.values()) == [(42, 43)]
    return stt_contract(example)


def replay_meetings_contract(example: Example) -> list[Any]:
    """``palaver replay`` reads a meeting's own state (``stt_workers.replay.meeting_state``): whether it was
    erased, and when it began; member and link records are not its state."""
    event = decode_on(MEETINGS, example.raw)
    if not isinstance(event, MeetingChangedV1):
        return []
    return [(event.deleted, event.created_at_ms)]


def vocabulary_contract(example: Example) -> list[Any]:
    """The STT worker (``VocabularyFollower``) and ``palaver replay`` (``meeting_vocabulary``) fold each
    record of the meeting's key into its vocabulary terms: names, glossary, title, agenda."""
    event = decode(example.raw)
    assert isinstance(event, MeetingVocabularyV1)
    vocabularies = Vocabularies()
    terms = vocabularies.apply(event.meeting_id, example.raw)
    assert terms is not None and terms[: len(event.names)] == event.names
    assert vocabularies.apply(event.meeting_id, None) == [], "a tombstone forgets it"
    return terms


def replay_transcripts_contract(example: Example) -> list[Any]:
    """``palaver replay --from transcripts`` (merger/replay.py) keeps the meeting's events that carry a run,
    and folds them with the merger's own rules into the replay's run."""
    event: Any = decode(example.raw)
    kept, bad = merger_replay.meeting_events(event.meeting_id, [example.raw])
    assert bad == 0 and kept == ([event] if getattr(event, "run", None) else [])
    made = merger_replay.remerge(event.meeting_id, kept, "r~merge", 1500)
    assert all(u.run == "r~merge" for u in made)
    return kept


def replay_dialogues_contract(example: Example) -> list[Any]:
    """``palaver replay`` reads the dialogues topic for the runs there, the events of its merged run
    already published, and a run's placed dialogues (``--from dialogues``)."""
    event: Any = decode(example.raw)
    assert enrich_replay.dialogue_runs([example.raw]) == [event.run]
    assert merger_replay.published_event_ids([example.raw], event.run) == {event.event_id}
    placed = enrich_replay.placed_dialogues([example.raw], event.run)
    return [(event.run, placed)]


def replay_insights_contract(example: Example) -> list[Any]:
    """``palaver replay --from dialogues`` asks nothing when a final result of the enrichment run covers the
    run's placed dialogues."""
    event: Any = decode(example.raw)
    if not isinstance(event, MeetingInsightsV1):
        assert not enrich_replay.enriched_already([example.raw], event.run, 0)
        return []
    assert enrich_replay.enriched_already([example.raw], event.run, event.transcript_revision) == event.final
    return [event.run]


def check_audio_contract(example: Example) -> list[Any]:
    """``palaver check`` (stack/check.py) on the audio topic: ``palaver.check.audio.AudioSeen.note`` takes a
    frame as its stream's samples, a start or stop as the bounds of one of its connections."""
    value, headers = _kafka_message(example)
    stream = headers["stream_id"].decode() if event_type(headers) == AUDIO_EVENT else decode(value).stream_id  # type: ignore[attr-defined]
    audio = AudioSeen(stream.split("/")[0])
    audio.note(stream.encode(), value, headers, 4, 42)
    assert audio.unreadable == 0
    if event_type(headers) == AUDIO_EVENT:
        (frame,) = audio.frames
        assert (frame.stream_id, frame.first_sample, frame.samples) == (
            stream, int(headers["first_sample"]), len(value) // 2)
        return [(frame.first_sample, frame.samples)]
    event = decode(value)
    if isinstance(event, StreamStartedV1):
        assert [c.first_sample for c in audio.connections[stream]] == [event.first_sample]
    return [[(c.first_sample, c.end_sample) for c in connections] for connections in audio.connections.values()]


def check_transcripts_contract(example: Example) -> list[Any]:
    """``palaver check`` on the transcripts topic: a final is an utterance over its samples, of its run;
    every other event is passed over."""
    event = decode(example.raw)
    seen = final_seen(event.meeting_id, example.raw, "4@42")  # type: ignore[attr-defined]
    if not isinstance(event, TranscriptFinalV1):
        assert seen is None
        return []
    assert seen is not None
    assert (seen.utterance_id, seen.run, seen.stream_id, seen.start_sample, seen.end_sample) == (
        event.utterance_id, event.run, event.stream_id, event.start_sample, event.end_sample)
    assert final_seen("mtg_another", example.raw, "4@42") is None
    return [seen]


# (topic, consumer name) -> what the consumer makes of one example of the topic.
CONTRACTS: dict[tuple[str, str], Callable[[Example], list[Any]]] = {
    ("audio.frames", "stt"): stt_contract,
    ("audio.frames", "palaver replay"): replay_audio_contract,
    ("meetings", "palaver replay"): replay_meetings_contract,
    ("meeting.vocabulary", "palaver replay"): vocabulary_contract,
    ("meeting.vocabulary", "vocabulary"): vocabulary_contract,
    ("transcripts", "palaver replay"): replay_transcripts_contract,
    ("dialogues", "palaver replay"): replay_dialogues_contract,
    ("insights", "palaver replay"): replay_insights_contract,
    ("audio.frames", "palaver check"): check_audio_contract,
    ("transcripts", "palaver check"): check_transcripts_contract,
    ("meetings", "palaver check"): replay_meetings_contract,  # the same read (stack/check.meeting_created_ms)
    ("transcripts", "merger"): merger_contract,
    ("transcripts", "store"): store_contract,
    ("dialogues", "store"): store_contract,
    ("dialogues", "live"): live_contract,
    ("dialogues", "enrichment"): enrichment_contract,
    ("enrichment.requests", "enrichment"): enrichment_contract,
    ("insights", "store"): store_contract,
    ("insights", "live"): live_contract,
    ("insights", "webhooks"): webhooks_contract,
    ("chat", "live"): live_contract,
    ("meetings", "live"): live_contract,
    ("edits", "store"): store_contract,
    ("users", "store"): store_contract,
    ("chat", "store"): store_contract,
    ("meetings", "store"): store_contract,
    ("sessions", "store"): store_contract,
    ("users", "names"): names_seed_contract,
    ("name.claims", "names"): names_contract,
    ("name.decisions", "claimants"): claimants_contract,
    ("name.decisions", "palaver admin"): claimants_contract,
}
# State topics carry no events: (topic, consumer) -> (the input topic the state derives from, the contract
# run on each example of that input).
STATE_CONTRACTS: dict[tuple[str, str], tuple[str, Callable[[Example], list[Any]]]] = {
    ("merger.state", "merger"): ("transcripts", merger_state_contract),
    ("name.owners", "names"): ("name.claims", names_state_contract),
    ("enrichment.state", "enrichment"): ("dialogues", enrichment_state_contract),
    ("ingest.timelines", "ingest"): ("audio.frames", ingest_timelines_contract),
}
REGISTERED = [(spec.name, consumer.name) for spec in TOPICS for consumer in spec.consumers]
REGISTERED_STATE = [(spec.name, consumer.name) for spec in STATE_TOPICS for consumer in spec.consumers]


def test_every_registered_consumer_has_a_contract() -> None:
    assert sorted(CONTRACTS) == sorted(REGISTERED), "CONTRACTS must list exactly the registry's consumers"
    assert sorted(STATE_CONTRACTS) == sorted(REGISTERED_STATE)


@pytest.mark.parametrize(
    ("key", "consumer"),
    [(key, c.name) for key, e in BY_ID.items() if e.topic in SPECS for c in SPECS[e.topic].consumers],
)
def test_example_through_consumer(key: str, consumer: str) -> None:
    example = BY_ID[key]
    contract = CONTRACTS.get((example.topic, consumer))
    assert contract is not None, f"no contract for {consumer} on {example.topic}: add one to CONTRACTS"
    contract(example)


@pytest.mark.parametrize(("topic", "consumer"), REGISTERED + REGISTERED_STATE)
def test_consumer_makes_something_of_its_topic(topic: str, consumer: str) -> None:
    """A consumer that makes nothing of any example of a topic either does not consume it (the registry
    is wrong) or lacks an example of what it consumes."""
    if (topic, consumer) in STATE_CONTRACTS:
        source, contract = STATE_CONTRACTS[(topic, consumer)]
        examples = [e for e in ALL_EXAMPLES if e.topic == source]
    else:
        contract, examples = CONTRACTS[(topic, consumer)], [e for e in ALL_EXAMPLES if e.topic == topic]
    assert examples
    assert any(contract(e) for e in examples), f"{consumer} makes nothing of any example of {topic}"


STATE_CASES = [
    (key, topic, consumer)
    for (topic, consumer), (source, _) in STATE_CONTRACTS.items()
    for key, example in BY_ID.items()
    if example.topic == source
]


@pytest.mark.parametrize(("key", "topic", "consumer"), STATE_CASES)
def test_example_through_state_contract(key: str, topic: str, consumer: str) -> None:
    _, contract = STATE_CONTRACTS[(topic, consumer)]
    contract(BY_ID[key])


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
        orjson.dumps({"event": "audio.frame", "version": 1}),  # frames are raw PCM, never JSON
    ],
    ids=[
        "empty", "garbage", "truncated", "array", "string", "number", "null", "unknown-event",
        "unknown-version", "version-as-string", "no-event", "missing-field", "wrong-type", "extra-field",
        "bad-word", "frame-as-json",
    ],
)  # fmt: skip
def test_decode_rejects(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        decode(raw)


def test_decode_accepts_str_and_bytes() -> None:
    raw = BY_ID["transcripts/transcript.final-v1/alice-greeting.json"].raw
    assert decode(raw) == decode(raw.decode())

"""Language per stream: the code list, the events and frame headers that carry it, the worker resolving it
(the stream's own, else PALAVER_STT_LANGUAGE), decoding in it, and an English-only model falling back."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from palaver import ids
from palaver.events import (
    AudioFrameV1,
    DecodeError,
    StreamStartedV1,
    TranscriptFinalV1,
    TranscriptPartialV1,
    decode,
    encode,
)
from palaver.events.audio_frame_v1 import FrameHeaderError
from palaver.languages import WHISPER_LANGUAGES, check_language, is_language
from palaver.settings import Settings
from palaver.streams.memory_broker import MemoryBroker
from stt_workers.cloud_transcriber import CloudTranscriber
from stt_workers.engine import Transcription, Word
from stt_workers.local_transcriber import LocalTranscriber
from stt_workers.pipeline import SttWorker
from stt_workers.processor import StreamInfo
from stt_workers.streaming import RecognizedSpeech
from stt_workers.transcriber import Decode, KeyedEvent, OutputQueue
from stt_workers.vad import WINDOW

RATE = 16000


def test_the_language_list_is_faster_whispers() -> None:
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    assert frozenset(_LANGUAGE_CODES) == WHISPER_LANGUAGES


@pytest.mark.parametrize("code", ["en", "de", "haw", "yue", "zh"])
def test_known_codes(code: str) -> None:
    assert is_language(code) and check_language(code) == code


@pytest.mark.parametrize("code", ["EN", "en-US", "english", "xx", "", " en", 7, None])
def test_unknown_codes(code: object) -> None:
    assert not is_language(code)


# --- events and frame headers ---------------------------------------------------------------------------


def _started(**changes: object) -> StreamStartedV1:
    fields: dict[str, object] = dict(event_id=ids.event_id("stream.started", "m1/ana", 0), meeting_id="m1",
                                     speaker_id="ana", stream_id="m1/ana", sample_rate=RATE, stream_start_ms=0)  # fmt: skip
    return StreamStartedV1(**{**fields, **changes})  # type: ignore[arg-type]


def test_stream_started_carries_the_language_and_old_events_still_decode() -> None:
    event = _started(language="de")
    assert decode(encode(event)) == event
    old = orjson.loads(encode(_started()))
    del old["language"]  # written before the field existed
    again = decode(orjson.dumps(old))
    assert isinstance(again, StreamStartedV1) and again.language is None


def test_stream_started_with_an_unknown_language_is_a_bad_message() -> None:
    raw = orjson.loads(encode(_started()))
    raw["language"] = "klingon"
    with pytest.raises(DecodeError, match="unknown language"):
        decode(orjson.dumps(raw))


def _frame(language: str | None) -> AudioFrameV1:
    return AudioFrameV1("m1", "ana", "m1/ana", RATE, 1600, 0, bytes(640), language=language)


def test_frame_language_header_round_trips_and_is_optional() -> None:
    with_language = _frame("de")
    headers = dict(with_language.kafka_headers())
    assert headers["language"] == b"de"
    assert AudioFrameV1.from_kafka(with_language.pcm, headers) == with_language
    without = _frame(None)
    assert "language" not in dict(without.kafka_headers()), "frames without a language look as before"
    assert AudioFrameV1.from_kafka(without.pcm, dict(without.kafka_headers())).language is None


def test_frame_with_an_unknown_language_is_a_bad_message() -> None:
    headers = dict(_frame("de").kafka_headers())
    headers["language"] = b"DE"
    with pytest.raises(FrameHeaderError, match="unknown language"):
        AudioFrameV1.from_kafka(bytes(640), headers)


# --- the worker resolves each stream's language ---------------------------------------------------------


class _Recorder:
    """A transcriber that records what the worker opens."""

    name, model, run = "whisper", "fake", "whisper:fake"

    def __init__(self) -> None:
        self.queue = OutputQueue()
        self.opened: list[StreamInfo] = []

    def forward(self, stream_id: str, event: KeyedEvent) -> None:
        self.queue.emit(stream_id, event)

    def holds(self, stream_id: str) -> bool:
        return any(i.stream_id == stream_id for i in self.opened)

    async def open(self, info: StreamInfo, partition: int, first_sample: int) -> None:
        self.opened.append(info)

    async def audio(self, frame: AudioFrameV1, record: object) -> None:
        pass


@pytest.mark.parametrize(("own", "expected"), [("de", "de"), (None, "fr")])
async def test_worker_opens_a_stream_in_its_own_language_else_the_default(own: str | None, expected: str) -> None:
    t = _Recorder()
    worker = SttWorker(Settings(stt_language="fr"), t, MemoryBroker().producer())  # type: ignore[arg-type]
    await worker._on_started(_started(language=own), 0)
    # A worker that takes the stream over mid-way sees only its frames: they carry the language too.
    other = AudioFrameV1("m1", "bo", "m1/bo", RATE, 48000, 0, bytes(640), language=own)
    await worker._on_frame(other, SimpleNamespace(partition=0, offset=7))  # type: ignore[arg-type]
    assert [(i.stream_id, i.language) for i in t.opened] == [("m1/ana", expected), ("m1/bo", expected)]
    [(stream_id, forwarded_event)] = t.queue.take()
    forwarded = decode(forwarded_event.value)  # type: ignore[union-attr]
    assert stream_id == "m1/ana"
    assert isinstance(forwarded, StreamStartedV1) and forwarded.language == own


# --- the local path -------------------------------------------------------------------------------------


def _loud(windows: np.ndarray, state: None) -> tuple[np.ndarray, None]:
    return np.where(np.abs(windows[:, -WINDOW:]).mean(axis=1) > 0.05, 0.9, 0.0).astype(np.float32), state


class _FakeWhisper:
    name = "whisper"

    def __init__(self, multilingual: bool) -> None:
        self.model = "small" if multilingual else "tiny.en"
        self.multilingual = multilingual
        self.calls: list[tuple[int, str]] = []

    def decode(
        self, batch: list[np.ndarray], language: str, with_words: list[bool], prompts: object = None, vocabulary: str = ""
    ) -> list[Transcription]:
        self.calls.append((len(batch), language))
        return [Transcription("hallo zusammen", (Word("hallo", 0.1, 0.4, 0.9), Word("zusammen", 0.5, 0.9, 0.9)), 0.9)
                for _ in batch]  # fmt: skip


async def _speak(t: LocalTranscriber, info: StreamInfo) -> list[object]:
    """One utterance (1 s of speech between silences) through the transcriber; the decoded events."""
    await t.open(info, 0, 0)
    audio = np.zeros(4 * RATE, np.int16)
    audio[RATE : 2 * RATE] = 8000
    for i, at in enumerate(range(0, len(audio), RATE // 10)):
        pcm = audio[at : at + RATE // 10].astype("<i2").tobytes()
        frame = AudioFrameV1(info.meeting_id, info.speaker_id, info.stream_id, RATE, at, 0, pcm)
        await t.audio(frame, SimpleNamespace(offset=i, timestamp=0))  # type: ignore[arg-type]
        t.after_batch({info.stream_id})
    decodes = [item for _, item in t.take() if isinstance(item, Decode)]
    results: dict[int, Transcription | None] = {}
    async for index, result in t.decode(decodes):
        results[index] = result
    published = [t.event(d, results[i]) for i, d in enumerate(decodes)]
    return [decode(p.value) for p in published if p is not None]


def _info(stream: str, language: str) -> StreamInfo:
    meeting, speaker = stream.split("/")
    return StreamInfo(meeting, speaker, stream, RATE, 0, language)


async def test_local_path_decodes_in_the_streams_language_and_reports_it() -> None:
    engine = _FakeWhisper(multilingual=True)
    t = LocalTranscriber(Settings(), engine, _loud)  # type: ignore[arg-type]
    events = await _speak(t, _info("m1/ana", "de"))
    finals = [e for e in events if isinstance(e, TranscriptFinalV1)]
    assert finals and all(e.language == "de" for e in finals)
    assert all(e.language == "de" for e in events if isinstance(e, TranscriptPartialV1))
    assert {language for _, language in engine.calls} == {"de"}
    await t.close()


async def test_english_only_model_decodes_english_says_so_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    engine = _FakeWhisper(multilingual=False)
    t = LocalTranscriber(Settings(), engine, _loud)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger="stt_workers.local_transcriber"):
        events = await _speak(t, _info("m1/ana", "de"))
        await t.open(_info("m1/ana", "de"), 0, 0)  # held already: no second warning
    assert [e.language for e in events if isinstance(e, TranscriptFinalV1)] == ["en"]
    assert {language for _, language in engine.calls} == {"en"}
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "English-only" in warnings[0].getMessage()
    await t.close()


# --- the cloud path -------------------------------------------------------------------------------------


class _Session:
    settled_sample = 0

    def __init__(self) -> None:
        self.queue: asyncio.Queue[RecognizedSpeech | None] = asyncio.Queue()

    async def send(self, pcm: bytes) -> None:
        if self.queue.empty():
            words = (Word("bonjour", 0.0, 0.3, 0.9),)
            self.queue.put_nowait(RecognizedSpeech(True, 0, len(pcm) // 2, "bonjour", words, 0.9))

    async def finish(self) -> None:
        self.queue.put_nowait(None)

    async def close(self) -> None:
        pass

    async def results(self):  # type: ignore[no-untyped-def]
        while (item := await self.queue.get()) is not None:
            yield item


class _Engine:
    name, model = "deepgram", "nova-3"

    def __init__(self) -> None:
        self.languages: list[str] = []

    async def open(self, sample_rate: int, language: str, first_sample: int = 0) -> _Session:
        self.languages.append(language)
        return _Session()


async def test_cloud_session_opens_in_the_streams_language() -> None:
    engine = _Engine()
    t = CloudTranscriber(Settings(stt_language="en"), engine)  # type: ignore[arg-type]
    await t.open(_info("m1/ana", "fr"), 0, 0)
    await t.audio(AudioFrameV1("m1", "ana", "m1/ana", RATE, 0, 0, bytes(3200)), SimpleNamespace(offset=1, timestamp=0))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    assert engine.languages == ["fr"]
    [(_, event)] = t.take()
    final = decode(event.value)  # type: ignore[union-attr]
    assert isinstance(final, TranscriptFinalV1) and final.language == "fr"
    await t.close()


async def test_a_dropped_partial_is_asked_again_with_the_next_audio() -> None:
    t = LocalTranscriber(Settings(), _FakeWhisper(multilingual=False), _loud)  # type: ignore[arg-type]
    info = _info("m1/ana", "en")
    await t.open(info, 0, 0)
    speech = (np.full(RATE // 10, 8000, np.int16)).astype("<i2").tobytes()  # 100 ms of loud audio

    asked: list[Decode] = []
    for i in range(16):  # 1.6 s of speech: one partial request after its first second
        frame = AudioFrameV1(info.meeting_id, info.speaker_id, info.stream_id, RATE, i * RATE // 10, 0, speech)
        await t.audio(frame, SimpleNamespace(offset=i, timestamp=0))  # type: ignore[arg-type]
        t.after_batch({info.stream_id})
        asked += [d for _, d in t.take() if isinstance(d, Decode)]
    assert len(asked) == 1 and asked[0].request.kind == "partial"
    assert t.event(asked[0], None) is None  # a late round dropped it
    frame = AudioFrameV1(info.meeting_id, info.speaker_id, info.stream_id, RATE, 16 * RATE // 10, 0, speech)
    await t.audio(frame, SimpleNamespace(offset=16, timestamp=0))  # type: ignore[arg-type]
    t.after_batch({info.stream_id})
    again = [d for _, d in t.take() if isinstance(d, Decode)]
    assert [d.request.kind for d in again] == ["partial"], "asked again at once, not after another second"
    assert len(again[0].request.audio) > len(asked[0].request.audio)
    await t.close()

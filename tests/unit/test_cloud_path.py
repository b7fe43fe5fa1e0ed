"""The cloud STT path without a network: mapping a streaming engine's results onto events, continuing a
stream's audio, the transcriber's output queue, ``Settled`` marks, and the cloud transcriber with a scripted
fake engine (resume points never pass a final that is not queued; stop publishes finals, then
stream.stopped)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
from prometheus_client import REGISTRY

from palaver import ids
from palaver.events import AudioFrameV1, StreamProgressV1, TranscriptFinalV1, TranscriptPartialV1, decode
from palaver.settings import Settings
from stt_workers.cloud_support import END_OF_RESULTS, Settled, drain
from stt_workers.cloud_transcriber import CloudTranscriber, refuses_only_the_stream
from stt_workers.deepgram_engine import refusal as deepgram_refusal
from stt_workers.engine import Word
from stt_workers.openai_realtime_engine import refusal_scope as openai_refusal_scope
from stt_workers.processor import StreamInfo, StreamingTranscript, continue_pcm, needed_offset
from stt_workers.scheduler import DecodeRequest
from stt_workers.streaming import EngineError, RecognizedSpeech
from stt_workers.transcriber import Decode, KeyedEvent, OutputQueue

RATE = 16000
INFO = StreamInfo("m1", "ana", "m1/ana", RATE, stream_start_ms=1000)
META = {"language": "en", "engine": "deepgram", "model": "nova-3"}


def speech(final: bool, start: int, end: int, text: str, first_word_s: float = 0.0) -> RecognizedSpeech:
    words = text.split()
    span = (end - start) / RATE - first_word_s
    step = span / max(1, len(words))
    timed = tuple(Word(w, first_word_s + i * step, first_word_s + (i + 1) * step, 0.9) for i, w in enumerate(words))
    return RecognizedSpeech(final, start, end, text, timed, 0.9)


def test_partials_share_the_open_utterance_and_the_final_takes_its_own_start() -> None:
    t = StreamingTranscript(INFO)
    p1 = t.partial(speech(False, 16000, 24000, "good morning"), **META)
    p2 = t.partial(speech(False, 16100, 32000, "good morning every"), **META)
    assert isinstance(p1, TranscriptPartialV1) and isinstance(p2, TranscriptPartialV1)
    assert p1.utterance_id == p2.utterance_id == ids.utterance_id("m1/ana", 16000)
    assert (p1.start_ms, p2.start_ms) == (2000, 2000)
    assert (p2.stable_text, p2.unstable_text, p2.sequence) == ("good morning", "every", 2)
    final = t.final(speech(True, 15800, 40000, "Good morning everyone."), **META)
    assert isinstance(final, TranscriptFinalV1)
    assert final.utterance_id == ids.utterance_id("m1/ana", 15800) and final.start_sample == 15800
    # Not before the partials' start, which the merger has settled the stream up to.
    assert final.start_ms == 2000 and final.end_ms <= 1000 + 40000 * 1000 // RATE
    assert final.text == "Good morning everyone." and len(final.words) == 3
    assert final.run == "deepgram:nova-3" and t.open is None


def test_a_final_starts_at_its_first_word_and_a_padded_result_keeps_its_id() -> None:
    t = StreamingTranscript(INFO)
    # OpenAI Realtime: the item starts 300 ms before the speech (prefix padding); words start after it.
    final = t.final(speech(True, 16000, 40000, "Any questions so far?", first_word_s=0.3), **META)
    assert final is not None
    assert final.utterance_id == ids.utterance_id("m1/ana", 16000)
    assert final.start_ms == 1000 + 1000 + 300
    assert final.words[0].start_ms == final.start_ms
    assert t.final(speech(True, 40000, 41000, ""), **META) is None
    assert t.partial(speech(False, 40000, 41000, ""), **META) is None and t.open is None


def frame(first: int, samples: int) -> AudioFrameV1:
    return AudioFrameV1("m1", "ana", "m1/ana", RATE, first, 1000, bytes(range(2)) * samples)


def test_continue_pcm_cuts_resent_audio_fills_holes_and_restarts_after_large_ones() -> None:
    f = frame(1000, 320)
    assert continue_pcm(1000, f) == (f.pcm, None)
    assert continue_pcm(1320, f) == (b"", None)
    assert continue_pcm(1100, f) == (f.pcm[100 * 2 :], None)
    assert continue_pcm(900, f) == (bytes(200) + f.pcm, None)
    assert continue_pcm(0, f, max_gap=999) == (f.pcm, 1000)


def test_needed_offset_drops_frames_before_the_resume_point() -> None:
    frames = deque([(320, 10), (640, 11), (960, 12)])
    assert needed_offset(frames, 0) == 10
    assert needed_offset(frames, 320) == 11 and len(frames) == 2
    assert needed_offset(frames, 700) == 12
    assert needed_offset(frames, 960) is None and not frames


def test_queue_keeps_order_and_drops_superseded_partials() -> None:
    box = OutputQueue()
    req = DecodeRequest("partial", None, RATE)  # type: ignore[arg-type]
    first, second = Decode(req), Decode(req)
    box.emit("m1/ana", KeyedEvent("m1", b"started"))
    box.decode("m1/ana", first, partial=True)
    box.emit("m1/ana", KeyedEvent("m1", b"progress"))
    box.decode("m1/ana", second, partial=True)
    assert box.take() == [("m1/ana", ("m1", b"started")), ("m1/ana", ("m1", b"progress")), ("m1/ana", second)]
    assert not box.pending().output and first.superseded


def test_queue_drops_the_partial_of_an_utterance_that_ended() -> None:
    box = OutputQueue()
    partial = Decode(DecodeRequest("partial", None, RATE))  # type: ignore[arg-type]
    final = Decode(DecodeRequest("final", None, RATE))  # type: ignore[arg-type]
    other = Decode(DecodeRequest("partial", None, RATE))  # type: ignore[arg-type]
    box.decode("m1/ana", partial, partial=True)
    box.decode("m1/ben", other, partial=True)
    box.drop_partial("m1/ana")
    box.decode("m1/ana", final)
    box.drop_partial("m1/cho")  # none waiting: nothing happens
    assert box.take() == [("m1/ben", other), ("m1/ana", final)]


async def test_drain_passes_settled_marks_on_after_the_results_before_them() -> None:
    queue: asyncio.Queue[object] = asyncio.Queue()
    for item in ("a", Settled(10), Settled(20), "b", Settled(30), END_OF_RESULTS):
        queue.put_nowait(item)
    seen: list[int] = []
    results = drain(queue, seen.append)
    assert await anext(results) == "a" and seen == []
    assert await anext(results) == "b" and seen == [10, 20]
    assert [r async for r in results] == [] and seen == [10, 20, 30]


# -- the cloud transcriber with a fake engine --------------------------------------------------------------


class FakeSession:
    """Scripted: after ``end`` samples were sent, deliver ``results``; ``settled`` follows the finals."""

    def __init__(self, script: list[tuple[int, RecognizedSpeech]], first_sample: int) -> None:
        self.script = list(script)
        self.sent = first_sample
        self.settled = first_sample
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.finished = False
        self.closed = False

    @property
    def settled_sample(self) -> int:
        return self.settled

    def _settle(self, sample: int) -> None:
        self.settled = max(self.settled, sample)

    async def send(self, pcm: bytes) -> None:
        self.sent += len(pcm) // 2
        while self.script and self.script[0][0] <= self.sent:
            result = self.script.pop(0)[1]
            self.queue.put_nowait(result)
            if result.final:
                self.queue.put_nowait(Settled(result.end_sample))

    async def finish(self) -> None:
        self.finished = True
        for _, result in self.script:
            self.queue.put_nowait(result)
        self.queue.put_nowait(END_OF_RESULTS)

    async def close(self) -> None:
        self.closed = True

    def results(self) -> AsyncIterator[RecognizedSpeech]:
        return drain(self.queue, self._settle)  # type: ignore[return-value]


class FakeEngine:
    name, model = "deepgram", "nova-3"

    def __init__(self, script: list[tuple[int, RecognizedSpeech]], refuse: bool = False,
                 languages: set[str] | None = None) -> None:  # fmt: skip
        self.script, self.refuse, self.languages = script, refuse, languages
        self.sessions: list[FakeSession] = []
        self.opened: list[str] = []  # the language of each open asked for

    async def open(self, sample_rate: int, language: str, first_sample: int = 0) -> FakeSession:
        self.opened.append(language)
        if self.refuse:
            raise EngineError("Deepgram refused the stream (HTTP 401)")
        if self.languages is not None and language not in self.languages:
            raise EngineError(f"Deepgram refused the stream (HTTP 400: language {language!r})", scope="stream")
        session = FakeSession([s for s in self.script if s[1].start_sample >= first_sample], first_sample)
        self.sessions.append(session)
        return session


SCRIPT = [
    (8000, speech(False, 4000, 8000, "good")),
    (16000, speech(True, 4000, 14000, "good morning")),
    (24000, speech(False, 20000, 24000, "let us")),
]


async def feed(t: CloudTranscriber, frames: int, first: int = 0, info: StreamInfo = INFO, offset: int = 100,
               progress: bool = False) -> None:  # fmt: skip
    """Frames of 100 ms; ``progress``: a consumer batch per frame (the worker's ``after_batch``)."""
    for i in range(frames):
        record = SimpleNamespace(offset=offset + i, timestamp=0, partition=0)
        f = AudioFrameV1(info.meeting_id, info.speaker_id, info.stream_id, RATE, first + i * 1600, 1000,
                         bytes(range(2)) * 1600)  # fmt: skip
        await t.audio(f, record)  # type: ignore[arg-type]
        if progress:
            t.after_batch({info.stream_id})
    await asyncio.sleep(0.05)


def queued_events(t: CloudTranscriber) -> list[object]:
    """What the worker's next round would take, decoded (test payloads that are no events as they are)."""
    return [decode(value) if value.startswith(b"{") else value for _, (_, value) in t.take()]  # type: ignore[misc]


async def test_resume_point_is_the_end_of_the_last_final_queued() -> None:
    t = CloudTranscriber(Settings(), FakeEngine(SCRIPT))
    await t.open(INFO, 0, 0)
    [point] = t.resume_points()
    assert (point.sample, point.needed_offset) == (0, None)
    await feed(t, 20)  # 32000 samples: a partial, a final, a partial of the next utterance
    events = queued_events(t)
    assert [type(e).__name__ for e in events] == ["TranscriptPartialV1", "TranscriptFinalV1", "TranscriptPartialV1"]
    [point] = t.resume_points()
    assert point.sample == 14000  # the open utterance must be transcribed again after a restart
    assert point.needed_offset == 100 + 14000 // 1600  # the frame holding sample 14000
    assert t.speaking() == 1
    await t.close()


async def test_stop_publishes_the_last_finals_then_the_stop_and_holds_the_commit_until_then() -> None:
    script = [*SCRIPT, (10**9, speech(True, 20000, 30000, "let us begin"))]
    engine = FakeEngine(script)
    t = CloudTranscriber(Settings(), engine)
    await t.open(INFO, 0, 0)
    await feed(t, 20)
    t.take()
    release = asyncio.Event()
    session = engine.sessions[0]
    original_finish = session.finish

    async def slow_finish() -> None:
        await release.wait()
        await original_finish()

    session.finish = slow_finish  # type: ignore[method-assign]
    await t.stop("m1/ana", 500, ("m1", b"stopped"))
    assert not t.holds("m1/ana")
    [point] = t.resume_points()
    assert point.needed_offset is not None and point.needed_offset <= 500
    release.set()
    await asyncio.sleep(0.05)
    events = queued_events(t)
    assert isinstance(events[0], TranscriptFinalV1) and events[0].text == "let us begin"
    assert events[-1] == b"stopped"
    assert list(t.resume_points()) == []


async def test_release_closes_sessions_without_finishing_and_keeps_the_resume_point() -> None:
    engine = FakeEngine(SCRIPT)
    t = CloudTranscriber(Settings(), engine)
    await t.open(INFO, 3, 0)
    await feed(t, 20)
    await t.release({3})
    assert engine.sessions[0].closed and not engine.sessions[0].finished
    [point] = t.resume_points()
    assert (point.partition, point.sample) == (3, 14000)
    t.forget({3})
    assert list(t.resume_points()) == [] and not t.holds("m1/ana")


async def test_a_resumed_stream_opens_its_session_at_the_resume_point() -> None:
    engine = FakeEngine(SCRIPT)
    t = CloudTranscriber(Settings(), engine)
    await t.open(INFO, 0, 14000)
    await feed(t, 10, first=12800)  # the first frame crosses the resume point: sent from 14000 on
    assert engine.sessions[0].sent == 12800 + 10 * 1600
    events = queued_events(t)
    assert [type(e).__name__ for e in events] == ["TranscriptPartialV1"]
    assert events[0].utterance_id == ids.utterance_id("m1/ana", 20000)  # type: ignore[attr-defined]
    await t.close()


async def test_a_refused_key_stops_the_worker_with_the_engine_error() -> None:
    t = CloudTranscriber(Settings(), FakeEngine(SCRIPT, refuse=True))
    await t.open(INFO, 0, 0)
    await feed(t, 1)
    with pytest.raises(EngineError, match="401"):
        t.check()
    await t.close()


# -- refusals of one stream --------------------------------------------------------------------------------

WELSH = StreamInfo("m1", "ben", "m1/ben", RATE, stream_start_ms=1000, language="cy")


def test_only_a_stream_scoped_refusal_outside_the_default_language_spares_the_worker() -> None:
    stream_only = EngineError("language 'cy' not supported", scope="stream")
    assert refuses_only_the_stream(stream_only, "cy", "en")
    # In the worker's default language every stream without its own language would meet it: the worker's.
    assert not refuses_only_the_stream(stream_only, "en", "en")
    assert not refuses_only_the_stream(EngineError("HTTP 401"), "cy", "en")
    assert not refuses_only_the_stream(ConnectionError("gave up"), "cy", "en")


def test_engines_scope_what_the_services_refuse() -> None:
    assert deepgram_refusal(400, "cy").scope == "stream" and "'cy'" in str(deepgram_refusal(400, "cy"))
    assert [deepgram_refusal(status, "cy").scope for status in (401, 402, 403)] == ["worker"] * 3
    language = {"type": "invalid_request_error", "code": "invalid_value",
                "param": "session.input_audio_transcription.language"}  # fmt: skip
    assert openai_refusal_scope(language) == "stream"
    assert openai_refusal_scope({**language, "param": "session.input_audio_transcription.model"}) == "worker"
    assert openai_refusal_scope({**language, "param": "audio"}) == "worker"
    assert openai_refusal_scope({"type": "invalid_request_error", "code": "invalid_api_key", "param": None}) == "worker"
    assert openai_refusal_scope({**language, "type": "server_error"}) == "worker"


def progress_of(events: list[object], stream_id: str) -> list[int]:
    return [e.settled_ms for e in events if isinstance(e, StreamProgressV1) and e.stream_id == stream_id]


def refused_streams(engine: str) -> float:
    return REGISTRY.get_sample_value("palaver_stt_refused_streams_total", {"engine": engine}) or 0.0


async def test_a_refused_stream_is_skipped_with_progress_and_the_others_go_on(caplog: pytest.LogCaptureFixture) -> None:
    engine = FakeEngine(SCRIPT, languages={"en"})
    t = CloudTranscriber(Settings(), engine)
    refused_before = refused_streams(engine.name)
    await t.open(INFO, 0, 0)
    await t.open(WELSH, 0, 0)
    await feed(t, 1, info=WELSH, offset=200)  # refused at its first audio
    await feed(t, 19, first=1600, info=WELSH, offset=201, progress=True)
    await feed(t, 20)
    t.check()  # the worker goes on
    assert refused_streams(engine.name) == refused_before + 1, "counted once, not once per frame"
    assert engine.opened == ["cy", "en"]
    [refused] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert "m1/ben" in refused.getMessage() and "'cy'" in refused.getMessage()
    points = {p.stream_id: p for p in t.resume_points()}
    # Its audio is consumed: it holds no commit, and a restart resumes it after what was skipped.
    assert (points["m1/ben"].sample, points["m1/ben"].needed_offset) == (20 * 1600, None)
    events = queued_events(t)
    # As for silence: its settled time, at most once per second of media, from the audio that came.
    assert progress_of(events, "m1/ben") == [1000 + 200, 1000 + 1200]
    assert not [e for e in events if isinstance(e, TranscriptFinalV1 | TranscriptPartialV1) and e.stream_id == "m1/ben"]
    assert [e.text for e in events if isinstance(e, TranscriptFinalV1)] == ["good morning"]
    await t.stop("m1/ben", 300, ("m1", b"ben stopped"))
    await asyncio.sleep(0.05)
    assert queued_events(t) == [b"ben stopped"]
    assert [p.stream_id for p in t.resume_points()] == ["m1/ana"]
    await t.close()


async def test_a_refusal_in_the_default_language_stops_the_worker() -> None:
    t = CloudTranscriber(Settings(stt_language="cy"), FakeEngine(SCRIPT, languages={"en"}))
    await t.open(WELSH, 0, 0)
    await feed(t, 1, info=WELSH)
    with pytest.raises(EngineError, match="'cy'"):
        t.check()
    await t.close()


async def test_a_stream_refused_mid_session_is_skipped_and_its_stop_still_goes_out() -> None:
    engine = FakeEngine(SCRIPT)
    t = CloudTranscriber(Settings(), engine)
    await t.open(WELSH, 0, 0)
    await feed(t, 20, info=WELSH)  # a partial, a final, a partial of the next utterance
    events = queued_events(t)
    assert [type(e).__name__ for e in events if not isinstance(e, StreamProgressV1)] == [
        "TranscriptPartialV1", "TranscriptFinalV1", "TranscriptPartialV1"]  # fmt: skip
    engine.sessions[0].queue.put_nowait(EngineError("language 'cy' no longer served", scope="stream"))
    await asyncio.sleep(0.05)
    assert t.speaking() == 0
    await feed(t, 10, first=20 * 1600, info=WELSH, offset=120, progress=True)
    t.check()
    [point] = t.resume_points()
    assert (point.sample, point.needed_offset) == (30 * 1600, None)
    await t.stop("m1/ben", 300, ("m1", b"ben stopped"))
    await asyncio.sleep(0.05)
    events = queued_events(t)
    assert progress_of(events, "m1/ben") == [1000 + 2100] and events[-1] == b"ben stopped"
    assert list(t.resume_points()) == []
    await t.close()

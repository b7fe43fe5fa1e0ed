"""The cloud streaming engines against local peers that speak each service's protocol and transcribe for
real (Whisper tiny.en): text, timing, partial-before-final, reconnects, refusals, session rotation.

No real cloud service is contacted; the keys are made up and must never show in errors or logs.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from palaver.demo.synth import Voice
from palaver.textmetrics import word_error_rate
from stt_workers.deepgram_engine import DeepgramEngine
from stt_workers.openai_realtime_engine import OpenAIRealtimeEngine
from stt_workers.streaming import EngineError, RecognizedSpeech, StreamingEngine
from tests.peers.asr import PeerAsr
from tests.peers.deepgram_peer import DeepgramPeer, DeepgramPeerHooks
from tests.peers.openai_realtime_peer import OpenAIPeerHooks, OpenAIRealtimePeer

pytestmark = pytest.mark.integration

RATE = 16000
FIRST_SAMPLE = 3 * RATE  # the stream had 3 s before this session: results must be in stream positions
DG_KEY = "dg-test-key-5f1c9a7e3b"
OA_KEY = "sk-test-key-0d4e8b2a6c91"
TWO_SENTENCES = (
    "The quarterly budget review is moved to Thursday morning.",
    "Please send the updated figures to the finance team before noon.",
)
SHORT_PHRASES = ("Good morning everyone.", "Let us begin with the roadmap.", "The launch date is in March.",
                 "Any questions so far?")  # fmt: skip
TOLERANCE = RATE // 2


@dataclass(frozen=True)
class Clip:
    pcm: bytes
    texts: tuple[str, ...]
    spans: tuple[tuple[int, int], ...]  # where each text is spoken, in stream samples

    @property
    def script(self) -> str:
        return " ".join(self.texts)


def make_clip(voice: Voice, texts: tuple[str, ...], lead_s: float, pause_s: float, tail_s: float) -> Clip:
    parts, spans, at = [np.zeros(int(lead_s * RATE), np.float32)], [], int(lead_s * RATE)
    for i, text in enumerate(texts):
        speech = voice.say(text, seed=i)
        spans.append((FIRST_SAMPLE + at, FIRST_SAMPLE + at + len(speech)))
        parts += [speech, np.zeros(int((pause_s if i < len(texts) - 1 else tail_s) * RATE), np.float32)]
        at += len(speech) + len(parts[-1])
    audio = np.concatenate(parts)
    return Clip((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes(), texts, tuple(spans))


@pytest.fixture(scope="module")
def voice() -> Voice:
    return Voice()


@pytest.fixture(scope="module")
def asr() -> PeerAsr:
    return PeerAsr()


@pytest.fixture(scope="module")
def two_sentences(voice: Voice) -> Clip:
    return make_clip(voice, TWO_SENTENCES, lead_s=0.6, pause_s=1.5, tail_s=1.2)


@pytest.fixture(scope="module")
def short_phrases(voice: Voice) -> Clip:
    return make_clip(voice, SHORT_PHRASES, lead_s=0.4, pause_s=1.3, tail_s=1.0)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Everything at DEBUG, the websockets handshake included: a key must not show even there."""
    caplog.set_level(logging.DEBUG)
    yield caplog
    for key in (DG_KEY, OA_KEY):
        assert key not in caplog.text


async def stream(engine: StreamingEngine, clip: Clip, speed: float = 4.0, chunk_ms: int = 100) -> list[RecognizedSpeech]:
    """Send the clip paced at ``speed`` times real time while collecting every result."""
    session = await engine.open(RATE, "en", first_sample=FIRST_SAMPLE)
    collected = asyncio.create_task(_collect(session.results()))
    step = RATE * chunk_ms // 1000 * 2
    try:
        for i in range(0, len(clip.pcm), step):
            await session.send(clip.pcm[i : i + step])
            await asyncio.sleep(chunk_ms / 1000 / speed)
        await session.finish()
    finally:
        done, _ = await asyncio.wait({collected}, timeout=30)
        if not done:
            collected.cancel()
        elif not collected.cancelled():
            collected.exception()  # retrieved: the caller sees the error that ``send`` or ``finish`` raised
    return collected.result()


async def _collect(results: AsyncIterator[RecognizedSpeech]) -> list[RecognizedSpeech]:
    return [r async for r in results]


def check_transcript(results: list[RecognizedSpeech], clip: Clip) -> None:
    """Text, timing and shape of the finals; partials come before the finals they precede."""
    finals = [r for r in results if r.final]
    assert finals, results
    assert not results[0].final, "the first result should be a partial"
    for final in finals:
        earlier = results[: results.index(final)]
        assert any(not r.final and final.start_sample - TOLERANCE <= r.start_sample <= final.end_sample
                   for r in earlier), f"no partial before {final.text!r}"  # fmt: skip
    text = " ".join(f.text for f in finals)
    assert word_error_rate(clip.script, text) <= 0.25, (clip.script, text)
    # Not duplicated: finals follow each other without overlapping, and say each sentence once.
    for a, b in itertools.pairwise(finals):
        assert a.end_sample <= b.start_sample + RATE // 10, (a, b)
    assert len(text.split()) <= len(clip.script.split()) + 3, text
    for start, end in clip.spans:
        inside = [f for f in finals if f.start_sample < end + TOLERANCE and f.end_sample > start - TOLERANCE]
        assert inside, f"nothing transcribed at {start}-{end}"
        assert abs(inside[0].start_sample - start) <= TOLERANCE, (inside[0], start)
        assert abs(inside[-1].end_sample - end) <= TOLERANCE, (inside[-1], end)
    for f in finals:
        assert any(s - TOLERANCE <= f.start_sample and f.end_sample <= e + TOLERANCE for s, e in clip.spans), f
        assert f.words and f.words[0].start_s >= 0
        assert all(w.start_s <= w.end_s <= (f.end_sample - f.start_sample) / RATE + 0.05 for w in f.words), f


# -- Deepgram ---------------------------------------------------------------------------------------------


async def test_deepgram_transcribes_with_partials(asr: PeerAsr, two_sentences: Clip, debug_logs: object) -> None:
    async with DeepgramPeer(asr, DG_KEY) as peer:
        results = await stream(DeepgramEngine(DG_KEY, base_url=peer.url), two_sentences)
    check_transcript(results, two_sentences)
    [conn] = peer.connections
    assert conn.auth_scheme == "Token"
    assert conn.query | {"model": "nova-3", "encoding": "linear16", "sample_rate": "16000", "channels": "1",
                         "interim_results": "true", "endpointing": "300", "utterance_end_ms": "1000",
                         "vad_events": "true"} == conn.query  # fmt: skip
    assert (conn.finalizes, conn.close_streams, conn.ended_by) == (1, 1, "close_stream")
    assert conn.bytes_received == len(two_sentences.pcm)


async def test_deepgram_reconnects_after_drops(asr: PeerAsr, two_sentences: Clip) -> None:
    # The first connection dies mid-way through the second sentence, the second one soon after it started.
    s2_start, s2_end = two_sentences.spans[1]
    mid_second = (s2_start + (s2_end - s2_start) // 2 - FIRST_SAMPLE) * 2
    hooks = DeepgramPeerHooks(drop_after_bytes=[mid_second, RATE * 2 // 2])
    async with DeepgramPeer(asr, DG_KEY, hooks) as peer:
        results = await stream(DeepgramEngine(DG_KEY, base_url=peer.url), two_sentences)
    assert [c.ended_by for c in peer.connections] == ["drop", "drop", "close_stream"]
    check_transcript(results, two_sentences)


async def test_deepgram_wrong_key_is_refused_without_retry(asr: PeerAsr, debug_logs: object) -> None:
    wrong = "dg-wrong-key-8c2d4e6f"
    async with DeepgramPeer(asr, DG_KEY) as peer:
        with pytest.raises(EngineError) as refused:
            await DeepgramEngine(wrong, base_url=peer.url).open(RATE, "en")
    assert "401" in str(refused.value)
    assert wrong not in str(refused.value) and wrong not in repr(refused.value)
    assert refused.value.__cause__ is None and refused.value.__suppress_context__
    assert peer.rejected == [401]
    assert wrong not in debug_logs.text  # type: ignore[attr-defined]
    async with DeepgramPeer(asr, DG_KEY) as peer:
        with pytest.raises(EngineError, match="400"):
            await DeepgramEngine(DG_KEY, model="nova-99", base_url=peer.url).open(RATE, "en")
    assert peer.rejected == [400]


async def test_deepgram_error_message_ends_the_stream(asr: PeerAsr, two_sentences: Clip) -> None:
    async with DeepgramPeer(asr, DG_KEY, DeepgramPeerHooks(error_after_bytes=RATE)) as peer:
        with pytest.raises(EngineError, match="DataError"):
            await stream(DeepgramEngine(DG_KEY, base_url=peer.url), two_sentences)
    assert len(peer.connections) == 1


async def test_deepgram_keepalive_while_no_audio(asr: PeerAsr) -> None:
    async with DeepgramPeer(asr, DG_KEY) as peer:
        session = await DeepgramEngine(DG_KEY, base_url=peer.url, keepalive_s=0.2).open(RATE, "en")
        collected = asyncio.create_task(_collect(session.results()))
        await session.send(bytes(RATE // 5 * 2))
        await asyncio.sleep(1.1)
        await session.finish()
        assert await collected == []
    assert peer.connections[0].keepalives >= 3


# -- OpenAI Realtime --------------------------------------------------------------------------------------


async def test_openai_transcribes_with_partials(asr: PeerAsr, two_sentences: Clip, debug_logs: object) -> None:
    async with OpenAIRealtimePeer(asr, OA_KEY) as peer:
        results = await stream(OpenAIRealtimeEngine(OA_KEY, base_url=peer.url), two_sentences)
    check_transcript(results, two_sentences)
    [session] = peer.sessions
    assert session.update is not None
    assert session.update["input_audio_format"] == "pcm16"
    assert session.update["input_audio_transcription"] == {"model": "gpt-4o-transcribe", "language": "en"}
    assert session.update["turn_detection"]["type"] == "server_vad"
    assert abs(session.bytes_received - len(two_sentences.pcm) * 3 // 2) <= 4  # resampled to 24 kHz


@pytest.mark.parametrize("fault", ["drop", "expire"])
async def test_openai_replaces_a_lost_session(asr: PeerAsr, two_sentences: Clip, fault: str) -> None:
    s2_start, s2_end = two_sentences.spans[1]
    mid_second_24k = (s2_start + (s2_end - s2_start) // 2 - FIRST_SAMPLE) * 3
    hooks = OpenAIPeerHooks(drop_after_bytes=[mid_second_24k]) if fault == "drop" else OpenAIPeerHooks(session_max_s=1.2)
    async with OpenAIRealtimePeer(asr, OA_KEY, hooks) as peer:
        results = await stream(OpenAIRealtimeEngine(OA_KEY, base_url=peer.url), two_sentences)
    assert peer.sessions[0].ended_by == ("drop" if fault == "drop" else "expired")
    assert len(peer.sessions) >= 2
    check_transcript(results, two_sentences)


async def test_openai_wrong_key_is_refused(asr: PeerAsr, debug_logs: object) -> None:
    wrong = "sk-wrong-key-77aa33bb99"
    async with OpenAIRealtimePeer(asr, OA_KEY) as peer:
        with pytest.raises(EngineError, match="invalid_api_key") as refused:
            await OpenAIRealtimeEngine(wrong, base_url=peer.url).open(RATE, "en")
    message = str(refused.value)
    assert wrong not in message and wrong[-4:] not in message and "***" not in message
    assert len(peer.sessions) == 1 and peer.sessions[0].ended_by == "auth"
    assert wrong not in debug_logs.text  # type: ignore[attr-defined]


async def test_openai_invalid_request_is_an_engine_error(asr: PeerAsr, two_sentences: Clip) -> None:
    async with OpenAIRealtimePeer(asr, OA_KEY) as peer:
        with pytest.raises(EngineError, match="invalid_value"):
            await OpenAIRealtimeEngine(OA_KEY, model="gpt-nonexistent", base_url=peer.url).open(RATE, "en")
    async with OpenAIRealtimePeer(asr, OA_KEY, OpenAIPeerHooks(error_after_bytes=RATE * 3)) as peer:
        with pytest.raises(EngineError, match="invalid_value"):
            await stream(OpenAIRealtimeEngine(OA_KEY, base_url=peer.url), two_sentences)
    assert len(peer.sessions) == 1


async def test_openai_rotates_sessions_without_losing_or_repeating(asr: PeerAsr, short_phrases: Clip) -> None:
    # ~10 s of audio; sessions may live 4 s and rotate at the first pause after 2 s. The peer would expire a
    # session after 4 s of wall time, so a rotation that comes too late shows as an "expired" session.
    async with OpenAIRealtimePeer(asr, OA_KEY, OpenAIPeerHooks(session_max_s=4.0)) as peer:
        engine = OpenAIRealtimeEngine(OA_KEY, base_url=peer.url, session_limit_s=4.0)
        results = await stream(engine, short_phrases, speed=2.0)
    assert len(peer.sessions) >= 3
    assert all(s.ended_by == "client" for s in peer.sessions), [s.ended_by for s in peer.sessions]
    check_transcript(results, short_phrases)
    finals = [r for r in results if r.final]
    assert len(finals) == len(SHORT_PHRASES), [f.text for f in finals]

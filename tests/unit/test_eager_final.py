"""Eager finals: the decode of an utterance's final segment starts once its silence covers the trailing pad,
before the end of speech is sure; it is the stream's partial meanwhile, and the final when the utterance
does end there (with a fake Whisper and a loudness VAD)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from palaver.events import AudioFrameV1, TranscriptFinalV1, TranscriptPartialV1, decode
from palaver.settings import Settings
from stt_workers.engine import Transcription, Word
from stt_workers.local_transcriber import LocalTranscriber
from stt_workers.processor import StreamInfo
from stt_workers.segmenter import Segmenter, SegmenterPolicy
from stt_workers.transcriber import Decode
from stt_workers.vad import WINDOW

RATE = 16000
FRAME = RATE // 10  # 100 ms frames
INFO = StreamInfo("m1", "ana", "m1/ana", RATE, 0)


def _loud(windows: np.ndarray, state: None) -> tuple[np.ndarray, None]:
    return np.where(np.abs(windows[:, -WINDOW:]).mean(axis=1) > 0.05, 0.9, 0.0).astype(np.float32), state


def _speech(*spans_s: tuple[float, float], total_s: float) -> np.ndarray:
    audio = np.zeros(int(total_s * RATE), np.float32)
    for start, end in spans_s:
        audio[int(start * RATE) : int(end * RATE)] = 0.25
    return audio


def test_ending_segment_is_the_segment_the_end_of_speech_cuts() -> None:
    policy = SegmenterPolicy()
    segmenter = Segmenter(_loud, policy)
    audio = _speech((0.5, 2.0), total_s=3.0)
    ending = None
    cut: list = []
    for at in range(0, len(audio), FRAME):
        cut += segmenter.push(audio[at : at + FRAME])
        if cut:
            break
        if ending is None:
            ending = segmenter.ending_segment()
            if ending is not None:
                # Told once the silence lasts eager_silence_ms, before min_silence_ms of it.
                silence_s = (at + FRAME) / RATE - 2.0
                assert policy.eager_silence_ms / 1000 <= silence_s < policy.min_silence_ms / 1000
    assert ending is not None and len(cut) == 1
    assert (ending.start_sample, ending.end_sample, ending.speech_start_sample) == (
        cut[0].start_sample,
        cut[0].end_sample,
        cut[0].speech_start_sample,
    )
    assert np.array_equal(ending.audio, cut[0].audio)
    assert segmenter.ending_segment() is None, "in silence there is no utterance to end"


def test_no_ending_segment_when_eager_silence_is_the_min_silence() -> None:
    segmenter = Segmenter(_loud, SegmenterPolicy(eager_silence_ms=500, min_silence_ms=500))
    audio = _speech((0.5, 2.0), total_s=3.0)
    for at in range(0, len(audio), FRAME // 4):
        segmenter.push(audio[at : at + FRAME // 4])
        assert segmenter.ending_segment() is None


def test_no_ending_segment_while_voiced() -> None:
    segmenter = Segmenter(_loud, SegmenterPolicy())
    segmenter.push(_speech((0.0, 1.0), total_s=1.0))
    assert segmenter.in_speech and segmenter.ending_segment() is None


class _Whisper:
    name, model, multilingual = "whisper", "tiny.en", False

    def __init__(self) -> None:
        self.decoded: list[tuple[int, bool]] = []  # (clip length, with words)
        self.heard: list[int] = []  # per decoded clip: how much of the stream the worker had then (samples)
        self.prompts: list[str] = []  # per decoded clip: its previous text
        self.vocabularies: list[str] = []  # per decoded clip: its meeting's vocabulary
        self.sample = 0

    def count_tokens(self, text: str) -> int:  # a prompt-taking engine's (BatchedWhisper.count_tokens)
        return len(text.split())

    def decode(
        self, batch: list[np.ndarray], language: str, with_words: list[bool], prompts: object = None, vocabulary: str = ""
    ) -> list[Transcription]:
        self.decoded += [(len(a), w) for a, w in zip(batch, with_words, strict=True)]
        self.heard += [self.sample] * len(batch)
        self.prompts += list(prompts) if isinstance(prompts, list) else [""] * len(batch)
        self.vocabularies += [vocabulary] * len(batch)
        return [Transcription("hello there", (Word("hello", 0.1, 0.4, 0.9), Word("there", 0.5, 0.9, 0.9)), 0.9)
                for _ in batch]  # fmt: skip


class _Worker:
    """Feeds frames and runs publish rounds the way the STT worker does, keeping what was published."""

    def __init__(self, settings: Settings | None = None, live: bool = True) -> None:
        self.whisper = _Whisper()
        self.t = LocalTranscriber(settings or Settings(), self.whisper, _loud, live=live)  # type: ignore[arg-type]
        self.published: list[object] = []
        self.sample = 0

    async def feed(self, audio: np.ndarray, rounds: bool) -> None:
        """Frame by frame; ``rounds``: a publish round after each frame (the decoder keeps up)."""
        for at in range(0, len(audio), FRAME):
            pcm = (audio[at : at + FRAME] * 32767).astype("<i2").tobytes()
            frame = AudioFrameV1("m1", "ana", "m1/ana", RATE, self.sample, 0, pcm)
            self.sample += len(pcm) // 2
            self.whisper.sample = self.sample
            await self.t.audio(frame, SimpleNamespace(offset=0, timestamp=0))  # type: ignore[arg-type]
            self.t.after_batch({"m1/ana"})
            if rounds:
                await self.round()

    async def round(self) -> None:
        items = [item for _, item in self.t.take()]
        decodes = [item for item in items if isinstance(item, Decode)]
        results: dict[int, Transcription | None] = {}
        if decodes:
            async for index, result in self.t.decode(decodes):
                results[index] = result
        for item in items:
            value = self.t.event(item, results[decodes.index(item)]) if isinstance(item, Decode) else item
            if value is not None:
                self.published.append(decode(value.value))

    def finals(self) -> list[TranscriptFinalV1]:
        return [e for e in self.published if isinstance(e, TranscriptFinalV1)]


async def test_an_eager_decode_done_before_the_end_of_speech_makes_the_final_without_another() -> None:
    w = _Worker()
    await w.t.open(INFO, 0, 0)
    await w.feed(_speech((0.3, 1.8), total_s=3.0), rounds=True)
    finals = w.finals()
    assert len(finals) == 1 and finals[0].text == "hello there" and finals[0].words
    length = finals[0].end_sample - finals[0].start_sample
    decodes = [(d, heard) for d, heard in zip(w.whisper.decoded, w.whisper.heard, strict=True) if d[0] == length]
    assert len(decodes) == 1 and decodes[0][0][1], "the final segment was decoded once, with word timings"
    assert decodes[0][1] < int((1.8 + 0.5) * RATE), "before 500 ms of silence made the end of speech sure"
    partials = [e for e in w.published if isinstance(e, TranscriptPartialV1)]
    assert partials and partials[-1].end_ms == finals[0].end_sample * 1000 // RATE, (
        "meanwhile the eager decode was the stream's partial"
    )
    assert w.published.index(partials[-1]) < w.published.index(finals[0])
    await w.t.close()


async def test_an_eager_decode_still_queued_at_the_end_of_speech_becomes_the_final() -> None:
    w = _Worker()
    await w.t.open(INFO, 0, 0)
    audio = _speech((0.3, 1.8), total_s=3.0)
    await w.feed(audio[: int(2.2 * RATE)], rounds=False)  # the decoder is behind: no round yet
    assert w.t.pending().output and not w.finals(), "400 ms into the silence the final's decode is queued"
    assert not w.t.pending().final, "while the utterance may go on, the eager decode overtakes nothing"
    assert not w.t._scheduler.final_waiting, "nor does it stop a running round's partials"
    await w.feed(audio[int(2.2 * RATE) :], rounds=False)
    assert w.t.pending().final, "at the end of speech it is the final's decode"
    assert w.t._scheduler.final_waiting, "a running round starts no more partials: the final's round comes"
    await w.round()
    assert not w.t._scheduler.final_waiting, "the final was taken for its round"
    assert len(w.finals()) == 1
    assert [with_words for _, with_words in w.whisper.decoded] == [True], "one decode: the eager one, as final"
    await w.t.close()


async def test_speech_that_resumes_after_a_short_pause_keeps_one_utterance() -> None:
    w = _Worker()
    await w.t.open(INFO, 0, 0)
    # A 420 ms pause: long enough for an eager decode, too short to end the utterance.
    await w.feed(_speech((0.3, 1.5), (1.92, 3.0), total_s=4.0), rounds=True)
    finals = w.finals()
    assert len(finals) == 1, "the pause did not end the utterance"
    assert finals[0].start_sample < int(0.3 * RATE) and finals[0].end_sample > int(3.0 * RATE)
    # the clips start at the stream's start (the pre-roll is clipped there): this one ends in the pause
    assert any(n < int(1.92 * RATE) and words for n, words in w.whisper.decoded), "an eager decode ran in the pause"
    assert [n for n, _ in w.whisper.decoded].count(finals[0].end_sample - finals[0].start_sample) == 1
    await w.t.close()


async def test_with_prompts_each_decode_carries_the_finals_published_before_it() -> None:
    w = _Worker(Settings(stt_prompt=True))
    await w.t.open(INFO, 0, 0)
    await w.feed(_speech((0.3, 1.5), (3.0, 4.0), (16.0, 17.0), total_s=18.0), rounds=True)
    assert len(w.finals()) == 3
    # (when each clip was decoded, its prompt): the decoder keeps up, so a decode belongs to the
    # utterance being spoken or just ended
    by_time = list(zip(w.whisper.heard, w.whisper.prompts, strict=True))
    assert {p for heard, p in by_time if heard < 3 * RATE} == {""}, "nothing was said before the first"
    assert {p for heard, p in by_time if 3 * RATE < heard < 16 * RATE} == {"hello there"}
    # 11 s of silence before the third utterance (more than PROMPT_RESET_MS): no previous text
    assert {p for heard, p in by_time if heard > 16 * RATE} == {""}
    await w.t.close()


async def test_prompts_are_off_by_default_and_in_replays() -> None:
    for worker in (_Worker(), _Worker(Settings(stt_prompt=True), live=False)):
        await worker.t.open(INFO, 0, 0)
        await worker.feed(_speech((0.3, 1.5), (3.0, 4.0), total_s=5.0), rounds=True)
        assert len(worker.finals()) == 2 and set(worker.whisper.prompts) == {""}
        await worker.t.close()


async def test_every_decode_of_a_meeting_carries_its_vocabulary_live_and_in_replays() -> None:
    for worker in (_Worker(), _Worker(live=False)):
        worker.t.set_vocabulary("m1", ["Aoife", "Grafana", "aoife"])
        worker.t.set_vocabulary("m2", ["Tadhg"])
        await worker.t.open(INFO, 0, 0)
        await worker.feed(_speech((0.3, 1.5), total_s=2.5), rounds=True)
        assert worker.finals() and set(worker.whisper.vocabularies) == {"Aoife, Grafana"}
        worker.t.set_vocabulary("m1", [])
        await worker.feed(_speech((0.3, 1.5), total_s=2.5), rounds=True)
        assert worker.whisper.vocabularies[-1] == "", "an empty vocabulary is forgotten"
        await worker.t.close()

"""Pure processing for one stream: frames in, segments out; segment + transcription -> final event."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from palaver import ids
from palaver.events import AudioFrameV1, StreamProgressV1, TranscriptFinalV1, TranscriptPartialV1, WordV1
from palaver.textmetrics import normalize
from stt_workers.engine import Transcription
from stt_workers.segmenter import Segment, Segmenter
from stt_workers.streaming import RecognizedSpeech

MAX_GAP_SAMPLES = 16000 * 30  # a larger hole in a stream starts a fresh segmenter instead of 30 s of zeros
RESUME_FORMAT = "stt-resume/1 "
MAX_RESUME_METADATA = 4000  # bytes; the broker's offset.metadata.max.bytes defaults to 4096


@dataclass(frozen=True)
class StreamInfo:
    meeting_id: str
    speaker_id: str
    stream_id: str
    sample_rate: int
    stream_start_ms: int
    # The language to decode and to report on the stream's events: the stream's own (its client's choice),
    # else the worker's default; a transcriber may narrow it to what its model can decode.
    language: str = "en"


@dataclass
class OpenUtterance:
    """The hypotheses of the utterance being spoken (LocalAgreement: words that two consecutive decodes
    agree on become stable and are never retracted)."""

    start_sample: int
    stable: tuple[str, ...] = ()
    last: tuple[str, ...] = ()
    sequence: int = 0
    decoded_until: int = 0  # end sample of the audio the last partial covered

    def update(self, words: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """Fold a new decode of the open utterance; returns (stable, unstable) words."""
        agreed = common_prefix(self.last, words)
        if agreed > len(self.stable):
            self.stable = self.stable + words[len(self.stable) : agreed]
        self.last = words
        self.sequence += 1
        return self.stable, words[len(self.stable) :]


def common_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """How many leading words agree, ignoring case and punctuation."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if normalize(x) != normalize(y):
            break
        n += 1
    return n


@dataclass
class StreamState:
    """What one worker holds for one stream it owns."""

    info: StreamInfo
    segmenter: Segmenter
    partition: int
    frame_offsets: deque[tuple[int, int]] = field(default_factory=deque)  # (end_sample, kafka offset)
    open_utterance: OpenUtterance | None = None
    progress_ms: int = -1  # the last settled time published
    # Kafka append time (ms) and end sample of the newest frame, to time events against their audio
    last_frame: tuple[int, int] = (0, 0)

    def audio_time_ms(self, sample: int) -> int:
        """When the audio up to ``sample`` reached Kafka, from the newest frame's append time."""
        appended_ms, end_sample = self.last_frame
        return appended_ms - (end_sample - sample) * 1000 // self.info.sample_rate

    def accept(self, frame: AudioFrameV1, offset: int, new_segmenter: Callable[[int], Segmenter]) -> list[Segment]:
        """Feed a frame. Resent audio (after a client reconnect) is skipped, small holes are filled with
        silence, and a large hole restarts segmentation at the frame."""
        expected = self.segmenter.end_sample
        pcm = pcm_to_float(frame.pcm)
        if frame.end_sample <= expected:
            return []
        segments: list[Segment] = []
        if frame.first_sample < expected:
            pcm = pcm[expected - frame.first_sample :]
        elif frame.first_sample > expected:
            gap = frame.first_sample - expected
            if gap > MAX_GAP_SAMPLES:
                segments = self.segmenter.flush()
                self.segmenter = new_segmenter(frame.first_sample)
                self.frame_offsets.clear()
            else:
                pcm = np.concatenate([np.zeros(gap, np.float32), pcm])
        self.frame_offsets.append((frame.end_sample, offset))
        return segments + self.segmenter.push(pcm)

    def committable_offset(self) -> int | None:
        """Offset of the earliest frame still holding needed audio (None: nothing needed)."""
        return needed_offset(self.frame_offsets, self.segmenter.keep_from)


def needed_offset(frame_offsets: deque[tuple[int, int]], keep: int) -> int | None:
    """Offset of the earliest frame holding audio at or after sample ``keep`` (None: none). Drops the
    frames before it from ``frame_offsets`` (``(end_sample, offset)`` in stream order)."""
    while frame_offsets and frame_offsets[0][0] <= keep:
        frame_offsets.popleft()
    return frame_offsets[0][1] if frame_offsets else None


def continue_pcm(expected: int, frame: AudioFrameV1, max_gap: int = MAX_GAP_SAMPLES) -> tuple[bytes, int | None]:
    """The part of ``frame`` that continues a stream whose audio so far ends at sample ``expected``:
    (PCM s16le to send, None), where resent audio is cut off and a small hole is filled with silence; or
    (the frame's PCM, its first sample) when the hole is larger than ``max_gap``: start afresh there."""
    if frame.end_sample <= expected:
        return b"", None
    if frame.first_sample < expected:
        return frame.pcm[(expected - frame.first_sample) * 2 :], None
    gap = frame.first_sample - expected
    if gap > max_gap:
        return frame.pcm, frame.first_sample
    return bytes(gap * 2) + frame.pcm, None


def resume_key(stream_id: str) -> str:
    """A stream's short key in commit metadata (stream ids run to 129 characters; metadata is ~4 KB)."""
    return hashlib.blake2b(stream_id.encode(), digest_size=8).hexdigest()


def encode_resume(points: Mapping[str, int]) -> str:
    """Commit metadata for an audio partition: per stream key (``resume_key``), the sample at which a
    restarted worker resumes that stream's segmentation (``Segmenter.keep_from``). The committed offset
    alone is not enough: it is the earliest of the partition's streams' resume frames, so the other
    streams' audio is re-read from before their own resume points, where a fresh segmenter could start
    in the middle of an utterance that was already published."""
    return RESUME_FORMAT + ";".join(f"{key}:{sample}" for key, sample in sorted(points.items()))


def decode_resume(metadata: str | None) -> dict[str, int]:
    """The inverse of ``encode_resume``; empty for metadata written by anything else."""
    if not metadata or not metadata.startswith(RESUME_FORMAT):
        return {}
    body = metadata[len(RESUME_FORMAT) :]
    points: dict[str, int] = {}
    for item in body.split(";") if body else ():
        key, _, sample = item.partition(":")
        points[key] = int(sample)
    return points


def pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def final_event(
    info: StreamInfo, segment: Segment, result: Transcription, *, language: str, engine: str, model: str,
    run: str | None = None,
) -> TranscriptFinalV1 | None:
    """The final transcript event for a decoded segment, or None when nothing was said. ``run``: the run it
    belongs to (default ``engine:model``, the live run; a replay names its own)."""
    if not result.words:
        return None
    base_ms = info.stream_start_ms + segment.start_sample * 1000 / info.sample_rate
    words = tuple(
        WordV1(
            word=w.word,
            start_ms=round(base_ms + w.start_s * 1000),
            end_ms=round(base_ms + w.end_s * 1000),
            probability=round(w.probability, 4),
        )
        for w in result.words
    )
    utterance = ids.utterance_id(info.stream_id, segment.start_sample)
    run = run or f"{engine}:{model}"
    return TranscriptFinalV1(
        event_id=ids.event_id("transcript.final", utterance, run),
        utterance_id=utterance,
        meeting_id=info.meeting_id,
        speaker_id=info.speaker_id,
        stream_id=info.stream_id,
        # VAD boundaries place the utterance; Whisper's word times are less exact at the edges.
        start_ms=_media_ms(info, segment.speech_start_sample),
        end_ms=max(_media_ms(info, segment.speech_start_sample) + 1, min(words[-1].end_ms, _media_ms(info, segment.end_sample))),
        start_sample=segment.start_sample,
        end_sample=segment.end_sample,
        sample_rate=info.sample_rate,
        text=result.text,
        words=words,
        confidence=round(result.confidence, 4),
        language=language,
        engine=engine,
        model=model,
        run=run,
    )


def _media_ms(info: StreamInfo, sample: int) -> int:
    return round(info.stream_start_ms + sample * 1000 / info.sample_rate)


def partial_event(info: StreamInfo, segment: Segment, open_utterance: OpenUtterance, stable: tuple[str, ...],
                  unstable: tuple[str, ...], *, language: str, engine: str, model: str,
                  run: str | None = None) -> TranscriptPartialV1:  # fmt: skip
    utterance = ids.utterance_id(info.stream_id, segment.start_sample)
    run = run or f"{engine}:{model}"
    return TranscriptPartialV1(
        event_id=ids.event_id("transcript.partial", utterance, run, open_utterance.sequence),
        utterance_id=utterance,
        meeting_id=info.meeting_id,
        speaker_id=info.speaker_id,
        stream_id=info.stream_id,
        start_ms=_media_ms(info, segment.speech_start_sample),
        end_ms=_media_ms(info, segment.end_sample),
        stable_text=" ".join(stable),
        unstable_text=" ".join(unstable),
        sequence=open_utterance.sequence,
        language=language,
        engine=engine,
        model=model,
        run=run,
    )


@dataclass
class StreamingTranscript:
    """Maps one stream's results from a streaming (cloud) engine onto partial and final events.

    The open utterance is fixed by its first result: every partial carries its id and start, so the
    merger replaces one partial by the next. A final takes its id from its own start sample (hash of stream
    and start sample, as on the Whisper path), and starts no earlier than the partials before it, which
    the merger has already settled the stream up to. Pure: no I/O, no clock."""

    info: StreamInfo
    open: OpenUtterance | None = None
    open_speech_start: int = 0  # where the open utterance's first word starts

    def partial(self, speech: RecognizedSpeech, *, language: str, engine: str, model: str) -> TranscriptPartialV1 | None:
        words = tuple(speech.text.split())
        if not words:
            return None
        if self.open is None:
            self.open = OpenUtterance(speech.start_sample)
            self.open_speech_start = _speech_start(speech, self.info.sample_rate)
        self.open.decoded_until = speech.end_sample
        stable, unstable = self.open.update(words)
        start = self.open.start_sample
        segment = Segment(start, max(speech.end_sample, self.open_speech_start), self.open_speech_start, _NO_AUDIO)
        return partial_event(self.info, segment, self.open, stable, unstable, language=language, engine=engine, model=model)

    def final(self, speech: RecognizedSpeech, *, language: str, engine: str, model: str) -> TranscriptFinalV1 | None:
        speech_start = _speech_start(speech, self.info.sample_rate)
        if self.open is not None:
            speech_start = max(speech_start, self.open_speech_start)
        self.open = None
        segment = Segment(speech.start_sample, max(speech.end_sample, speech_start), speech_start, _NO_AUDIO)
        result = Transcription(speech.text, speech.words, speech.confidence)
        return final_event(self.info, segment, result, language=language, engine=engine, model=model)


_NO_AUDIO = np.zeros(0, np.float32)


def _speech_start(speech: RecognizedSpeech, sample_rate: int) -> int:
    """Where the first word starts (a result's start may include padding before the speech)."""
    if not speech.words:
        return speech.start_sample
    return speech.start_sample + max(0, round(speech.words[0].start_s * sample_rate))


def progress_event(info: StreamInfo, settled_sample: int, run: str) -> StreamProgressV1:
    settled = _media_ms(info, settled_sample)
    return StreamProgressV1(
        event_id=ids.event_id("stream.progress", info.stream_id, run, settled),
        meeting_id=info.meeting_id,
        speaker_id=info.speaker_id,
        stream_id=info.stream_id,
        settled_ms=settled,
        run=run,
    )

"""Pure processing for one stream: frames in, segments out; segment + transcription -> final event."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from palaver import ids
from palaver.events import AudioFrameV1, TranscriptFinalV1, WordV1
from stt_workers.engine import Transcription
from stt_workers.segmenter import Segment, Segmenter

MAX_GAP_SAMPLES = 16000 * 30  # a larger hole in a stream starts a fresh segmenter instead of 30 s of zeros


@dataclass(frozen=True)
class StreamInfo:
    meeting_id: str
    speaker_id: str
    stream_id: str
    sample_rate: int
    stream_start_ms: int


@dataclass
class StreamState:
    """What one worker holds for one stream it owns."""

    info: StreamInfo
    segmenter: Segmenter
    partition: int
    frame_offsets: deque[tuple[int, int]] = field(default_factory=deque)  # (end_sample, kafka offset)

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
        keep = self.segmenter.keep_from
        while self.frame_offsets and self.frame_offsets[0][0] <= keep:
            self.frame_offsets.popleft()
        return self.frame_offsets[0][1] if self.frame_offsets else None


def pcm_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def final_event(
    info: StreamInfo, segment: Segment, result: Transcription, *, language: str, engine: str, model: str
) -> TranscriptFinalV1 | None:
    """The final transcript event for a decoded segment, or None when nothing was said."""
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
    run = f"{engine}:{model}"
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

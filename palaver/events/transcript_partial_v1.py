"""The open utterance of a stream while it is being spoken: a stable prefix (never retracted) and an
unstable tail that later decodes may change. The final event with the same ``utterance_id`` replaces it."""

from __future__ import annotations

from typing import Literal

from palaver.events.base import EventV


class TranscriptPartialV1(EventV):
    event: Literal["transcript.partial"] = "transcript.partial"
    version: Literal[1] = 1
    event_id: str
    utterance_id: str  # the id its final will have: hash(stream_id, start_sample)
    meeting_id: str
    speaker_id: str
    stream_id: str
    start_ms: int
    end_ms: int  # media time of the end of the audio this hypothesis covers
    stable_text: str
    unstable_text: str
    sequence: int  # increases with every partial of the utterance
    language: str
    engine: str
    model: str
    run: str

    @property
    def text(self) -> str:
        return " ".join(t for t in (self.stable_text.strip(), self.unstable_text.strip()) if t)

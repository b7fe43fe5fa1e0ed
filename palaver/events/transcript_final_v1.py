"""One finished utterance of one stream, with word timings, on the meeting's media timeline."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from palaver.events.base import EventV


class WordV1(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    word: str
    start_ms: int
    end_ms: int
    probability: float


class TranscriptFinalV1(EventV):
    event: Literal["transcript.final"] = "transcript.final"
    version: Literal[1] = 1
    event_id: str
    utterance_id: str  # hash(stream_id, start_sample): a re-decode after a crash gets the same id
    meeting_id: str
    speaker_id: str
    stream_id: str
    start_ms: int  # media time from the meeting's start
    end_ms: int
    start_sample: int
    end_sample: int
    sample_rate: int
    text: str
    words: tuple[WordV1, ...] = ()
    confidence: float
    language: str
    engine: str
    model: str
    run: str  # which engine/model/configuration produced it; reprocessed runs sit beside the original

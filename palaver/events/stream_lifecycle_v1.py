"""A stream (one speaker in one meeting) starts and stops. Produced by ingest onto the audio topic, in
order with the stream's frames, and forwarded by the STT worker onto the transcripts topic for the merger."""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator

from palaver.events.base import EventV
from palaver.languages import check_language


class StreamStartedV1(EventV):
    event: Literal["stream.started"] = "stream.started"
    version: Literal[1] = 1
    event_id: str
    meeting_id: str
    speaker_id: str
    stream_id: str
    sample_rate: int
    encoding: Literal["pcm_s16le"] = "pcm_s16le"
    channels: Literal[1] = 1
    stream_start_ms: int  # where sample 0 of this stream sits on the meeting's media timeline
    first_sample: int = 0  # > 0 when a client reconnects and resumes
    # Wall time (ms since the Unix epoch) of the meeting's media time 0 on the timeline the ingest placed
    # this stream on: a time on that timeline plus this is when it was said. None from older producers.
    timeline_epoch_ms: int | None = None
    # The stream's spoken language (a Whisper code) when its client chose one; None: the STT worker's
    # default (PALAVER_STT_LANGUAGE). The language actually decoded is on each transcript event.
    language: str | None = None
    # The ingest's id of this connection: where its placement record is in ingest.timelines
    # ("partition@offset"), unique per connection across ingest processes. Its stream.stopped and frames
    # carry it too, so a stop that another process sends late (after the stream resumed elsewhere) is
    # known for an earlier connection's. None from older producers.
    connection: str | None = None
    run: str | None = None  # set by the STT worker that forwards it to the transcripts topic

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str | None) -> str | None:
        # An unknown code makes a bad message (dead-lettered), not a decode that fails in the worker.
        return check_language(value)


class StreamStoppedV1(EventV):
    event: Literal["stream.stopped"] = "stream.stopped"
    version: Literal[1] = 1
    event_id: str
    meeting_id: str
    speaker_id: str
    stream_id: str
    stream_start_ms: int
    end_sample: int  # samples received (and durable) in this stream
    sample_rate: int = 16000
    reason: Literal["end", "disconnect", "error"]
    connection: str | None = None  # the stream.started's this stop ends; None from older producers
    run: str | None = None  # set by the STT worker that forwards it to the transcripts topic

"""How far a stream is settled for one run: no utterance of the stream that starts before ``settled_ms``
will be emitted any more (all of them have their final). The merger's watermark is the minimum over a
meeting's active streams, so silent streams do not hold the meeting's transcript back."""

from __future__ import annotations

from typing import Literal

from palaver.events.base import EventV


class StreamProgressV1(EventV):
    event: Literal["stream.progress"] = "stream.progress"
    version: Literal[1] = 1
    event_id: str
    meeting_id: str
    speaker_id: str
    stream_id: str
    settled_ms: int
    run: str

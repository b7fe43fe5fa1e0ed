"""Places each stream on its meeting's media timeline, once.

The meeting's clock starts when its first stream connects; a stream's sample 0 sits at its connect time
on that clock. From then on only sample counts matter, so network jitter and client clock skew cannot
reorder speakers. A reconnecting stream (``start_sample`` > 0) keeps its original placement.

The placement lives in this process's memory: a multi-instance ingest needs sticky routing per meeting
(documented in docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MeetingClock:
    meeting_epoch_ms: dict[str, int] = field(default_factory=dict)
    stream_start_ms: dict[str, int] = field(default_factory=dict)

    def place(self, meeting_id: str, stream: str, now_ms: int, start_sample: int, sample_rate: int) -> int:
        """Media time (ms from the meeting's start) of the stream's sample 0."""
        if stream in self.stream_start_ms:
            return self.stream_start_ms[stream]
        epoch = self.meeting_epoch_ms.setdefault(meeting_id, now_ms)
        start = max(0, now_ms - epoch - start_sample * 1000 // sample_rate)
        self.stream_start_ms[stream] = start
        return start

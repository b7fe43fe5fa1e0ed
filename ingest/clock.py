"""Places each stream on its meeting's media timeline, once.

The meeting's clock starts when its first stream connects; a stream's sample 0 sits at its connect time
on that clock. From then on only sample counts matter, so network jitter and client clock skew cannot
reorder speakers. A stream is one continuous timeline:

- a reconnect that resumes (``start_sample`` = N > 0) continues at sample N;
- a fresh connection (no ``start_sample``) of a stream seen before continues the stream's timeline at
  the current time, never before audio it already has, so its utterances get new ids instead of
  overwriting the earlier session's.

The placement lives in this process's memory: a multi-instance ingest needs sticky routing per meeting
(documented in docs/architecture.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Placement:
    stream_start_ms: int  # media time of the stream's sample 0
    first_sample: int  # stream position of this connection's first sample


@dataclass
class MeetingClock:
    meeting_epoch_ms: dict[str, int] = field(default_factory=dict)
    stream_start_ms: dict[str, int] = field(default_factory=dict)
    stream_end_sample: dict[str, int] = field(default_factory=dict)

    def place(self, meeting_id: str, stream: str, now_ms: int, start_sample: int, sample_rate: int) -> Placement:
        epoch = self.meeting_epoch_ms.setdefault(meeting_id, now_ms)
        if stream not in self.stream_start_ms:
            start = max(0, now_ms - epoch - start_sample * 1000 // sample_rate)
            self.stream_start_ms[stream] = start
            return Placement(start, start_sample)
        start = self.stream_start_ms[stream]
        if start_sample > 0:
            return Placement(start, start_sample)
        elapsed = (now_ms - epoch - start) * sample_rate // 1000
        return Placement(start, max(elapsed, self.stream_end_sample.get(stream, 0)))

    def note_end(self, stream: str, end_sample: int) -> None:
        """Record how far a connection's audio reached, so a later fresh connection starts after it."""
        self.stream_end_sample[stream] = max(end_sample, self.stream_end_sample.get(stream, 0))

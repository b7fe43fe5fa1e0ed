"""Places each stream on its meeting's media timeline, once.

The meeting's clock starts when its first stream connects; a stream's sample 0 sits at its connect time
on that clock. From then on only sample counts matter, so network jitter and client clock skew cannot
reorder speakers. A stream is one continuous timeline:

- a reconnect that resumes (``start_sample`` = N > 0) continues at sample N;
- a fresh connection (no ``start_sample``) of a stream seen before continues the stream's timeline at
  the current time, never before audio it already has, so its utterances get new ids instead of
  overwriting the earlier session's.

The placement lives in this process's memory: a multi-instance ingest needs sticky routing per meeting
(documented in docs/architecture.md). A meeting's timeline is dropped when the meeting ends (``forget``)
or once none of its streams has been connected for a while (``release_idle``); a stream of it that comes
back afterwards is placed as after an ingest restart (docs/architecture.md, "Time").
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MeetingTimeline:
    epoch_ms: int  # wall time of the meeting's media time 0
    stream_start_ms: dict[str, int] = field(default_factory=dict)
    stream_end_sample: dict[str, int] = field(default_factory=dict)
    connected: int = 0  # connections placed and not yet ended
    idle_since_ms: int = 0  # when ``connected`` last fell to 0


@dataclass(frozen=True)
class Placement:
    stream_start_ms: int  # media time of the stream's sample 0
    first_sample: int  # stream position of this connection's first sample
    meeting_id: str = ""
    stream: str = ""
    timeline: MeetingTimeline | None = field(default=None, compare=False, repr=False)


@dataclass
class MeetingClock:
    meetings: dict[str, MeetingTimeline] = field(default_factory=dict)

    def place(self, meeting_id: str, stream: str, now_ms: int, start_sample: int, sample_rate: int) -> Placement:
        """Where a new connection's audio goes; the connection counts as connected until ``note_end``."""
        timeline = self.meetings.get(meeting_id)
        if timeline is None:
            timeline = self.meetings[meeting_id] = MeetingTimeline(epoch_ms=now_ms)
        timeline.connected += 1
        if stream not in timeline.stream_start_ms:
            start = max(0, now_ms - timeline.epoch_ms - start_sample * 1000 // sample_rate)
            timeline.stream_start_ms[stream] = start
            return Placement(start, start_sample, meeting_id, stream, timeline)
        start = timeline.stream_start_ms[stream]
        if start_sample > 0:
            return Placement(start, start_sample, meeting_id, stream, timeline)
        elapsed = (now_ms - timeline.epoch_ms - start) * sample_rate // 1000
        first = max(elapsed, timeline.stream_end_sample.get(stream, 0))
        return Placement(start, first, meeting_id, stream, timeline)

    def note_end(self, placement: Placement, end_sample: int, now_ms: int) -> None:
        """The connection ``placement`` was made for ended at stream sample ``end_sample``: a later fresh
        connection of the stream starts after it. Nothing when its meeting was forgotten meanwhile."""
        timeline = self.meetings.get(placement.meeting_id)
        if timeline is None or timeline is not placement.timeline:
            return
        previous = timeline.stream_end_sample.get(placement.stream, 0)
        timeline.stream_end_sample[placement.stream] = max(end_sample, previous)
        timeline.connected -= 1
        if timeline.connected == 0:
            timeline.idle_since_ms = now_ms

    def forget(self, meeting_id: str) -> None:
        """Drop the meeting's timeline (the meeting ended). Connections still open keep their placement;
        a stream connecting later starts a new timeline, as after an ingest restart."""
        self.meetings.pop(meeting_id, None)

    def release_idle(self, now_ms: int, idle_ms: int) -> list[str]:
        """Forget every meeting with no connected stream for longer than ``idle_ms``; return their ids."""
        idle = [m for m, t in self.meetings.items() if t.connected == 0 and now_ms - t.idle_since_ms > idle_ms]
        for meeting_id in idle:
            del self.meetings[meeting_id]
        return idle

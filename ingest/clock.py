"""Places each stream on its meeting's media timeline: the pure rules (no I/O).

The meeting's clock starts when its first stream connects; a stream's sample 0 sits at its connect time
on that clock. From then on only sample counts matter, so network jitter and client clock skew cannot
reorder speakers. A stream is one continuous timeline:

- a reconnect that resumes (``start_sample`` = N > 0) continues at sample N;
- a fresh connection (no ``start_sample``) of a stream seen before continues the stream's timeline at
  the current time, never before audio it already has, so its utterances get new ids instead of
  overwriting the earlier session's.

A meeting's timeline is durable in the compacted ``ingest.timelines`` topic, keyed by meeting
(``ingest.timeline_log``); every ingest process folds the whole topic, in log order, with ``merge``, so
all of them hold the same timelines. A connection is placed by writing ``propose``'s record and reading
it back: ``place`` then answers from the fold just before and just after that record. ``merge`` is
first-wins (the epoch and each stream's start are those of the earliest record that has them), so two
processes placing streams of one meeting at the same moment agree on whichever record the partition
took first, and no answer once given can change.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class StreamMark:
    start_ms: int  # media time of the stream's sample 0
    end_sample: int = 0  # the stream sample its audio reached, as far as a connection's end told


@dataclass(frozen=True)
class Timeline:
    """One meeting's timeline as one record of ``ingest.timelines`` states it (or as the fold holds it)."""

    epoch_ms: int  # wall time of the meeting's media time 0
    streams: dict[str, StreamMark] = field(default_factory=dict)
    active_ms: int = 0  # wall time of the last placement or connection end (idle meetings are dropped)

    def to_json(self) -> dict[str, Any]:
        return {"epoch_ms": self.epoch_ms, "active_ms": self.active_ms,
                "streams": {s: [m.start_ms, m.end_sample] for s, m in self.streams.items()}}  # fmt: skip

    @staticmethod
    def from_json(value: dict[str, Any]) -> Timeline:
        """Raises KeyError, TypeError or ValueError on a value ``to_json`` did not make."""
        streams = {str(s): StreamMark(int(start), int(end)) for s, (start, end) in value["streams"].items()}
        return Timeline(int(value["epoch_ms"]), streams, int(value["active_ms"]))


@dataclass(frozen=True)
class Placement:
    stream_start_ms: int  # media time of the stream's sample 0
    first_sample: int  # stream position of this connection's first sample
    epoch_ms: int  # wall time of the meeting's media time 0
    connection: str = ""  # the connection's id: where its placement record is ("partition@offset")


def merge(held: Timeline | None, record: Timeline | None) -> Timeline | None:
    """The fold of ``ingest.timelines``: the meeting's timeline after ``record`` (None: a tombstone, the
    meeting's timeline dropped). First wins: ``held``'s epoch and stream starts stay; a stream only
    ``record`` has is rebased onto ``held``'s epoch (its writer may not have known it yet). End samples
    only grow."""
    if record is None or held is None:
        return record
    streams = dict(held.streams)
    shift = record.epoch_ms - held.epoch_ms
    for stream, mark in record.streams.items():
        known = streams.get(stream)
        if known is None:
            streams[stream] = StreamMark(max(0, mark.start_ms + shift), mark.end_sample)
        elif mark.end_sample > known.end_sample:
            streams[stream] = replace(known, end_sample=mark.end_sample)
    return Timeline(held.epoch_ms, streams, max(held.active_ms, record.active_ms))


def propose(held: Timeline | None, stream: str, now_ms: int, start_sample: int, sample_rate: int) -> Timeline:
    """The record a new connection of ``stream`` writes, from what this process holds (``held``, maybe
    stale): ``held`` with the stream placed if it is new (its sample ``start_sample`` at ``now_ms``), or a
    new timeline starting now."""
    timeline = held or Timeline(epoch_ms=now_ms)
    streams = dict(timeline.streams)
    if stream not in streams:
        streams[stream] = StreamMark(max(0, now_ms - timeline.epoch_ms - start_sample * 1000 // sample_rate))
    return Timeline(timeline.epoch_ms, streams, max(timeline.active_ms, now_ms))


def place(before: Timeline | None, after: Timeline, stream: str, now_ms: int, start_sample: int,
          sample_rate: int) -> Placement:  # fmt: skip
    """Where a connection's audio goes, from the fold just before its record (``before``) and just after
    (``after``, which has the stream). A stream new to ``before`` starts at ``start_sample``; a resume
    (``start_sample`` > 0) continues there; a fresh connection of a known stream continues at the current
    time, never before the audio the stream reached."""
    mark = after.streams[stream]
    if before is None or stream not in before.streams or start_sample > 0:
        return Placement(mark.start_ms, start_sample, after.epoch_ms)
    elapsed = (now_ms - after.epoch_ms - mark.start_ms) * sample_rate // 1000
    return Placement(mark.start_ms, max(elapsed, mark.end_sample), after.epoch_ms)


def ended(held: Timeline, stream: str, end_sample: int, now_ms: int) -> Timeline:
    """The record a connection's end writes: the stream's audio reached ``end_sample``."""
    streams = dict(held.streams)
    mark = streams.get(stream)
    if mark is not None:
        streams[stream] = replace(mark, end_sample=max(end_sample, mark.end_sample))
    return Timeline(held.epoch_ms, streams, max(held.active_ms, now_ms))


def idle(timelines: dict[str, Timeline], connected: set[str], now_ms: int, idle_ms: int) -> list[str]:
    """The meetings with no connection in this process (``connected``: those with one) and no placement or
    connection end for longer than ``idle_ms``."""
    return [m for m, t in timelines.items() if m not in connected and now_ms - t.active_ms > idle_ms]

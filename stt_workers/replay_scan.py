"""Finding one meeting's audio on the audio topic, and whether all of it is still there.

The audio topic is keyed by stream (``meeting_id/speaker_id``), so a meeting's records may lie in any
partition, between other meetings'. ``scan`` reads every partition from the offset of the meeting's start
(``offsets_for_times``, less a margin for clock skew between the API and the broker; from the oldest
record when the start is not known) to the end it has now, keeping the offsets of the meeting's records
and what each of its streams holds. A replay then reads only those offset ranges.

Expired audio: the topic keeps records ``AUDIO_FRAMES.retention_ms`` (7 days, the registry's), deleting
whole segments once their newest record is older. A meeting that began within the retention has lost
nothing; for an older one, a partition whose oldest record left is from after the meeting began may have
lost its beginning (``may_have_lost``). And every stream's first record must be its ``stream.started`` at
sample 0: a stream that starts with anything else lost its beginning (``lost_beginnings``). Either way the
replay refuses, saying so: a transcript of part of a meeting would be a run that looks whole.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from palaver.events import DecodeError, StreamStartedV1, StreamStoppedV1, decode
from palaver.events.audio_frame_v1 import AUDIO_EVENT, BYTES_PER_SAMPLE, FrameHeaderError, event_type
from palaver.events.registry import AUDIO_FRAMES, topic_name
from palaver.settings import Settings
from palaver.streams.clients import headers_dict, make_consumer

SKEW_MARGIN_MS = 10 * 60 * 1000  # read from this long before the meeting's creation


@dataclass
class StreamSeen:
    """What the topic holds of one stream of the meeting."""

    partition: int
    first: str  # its first record: "stream.started", "stream.stopped" or "audio.frame"
    first_sample: int  # the first record's sample (a start's first sample, a frame's first, a stop's end)
    sample_rate: int = 16000
    samples: int = 0  # audio samples on the topic
    stopped: bool = False  # its last record is its stream.stopped (False: a live stream)


@dataclass
class MeetingAudio:
    """The meeting's records on the audio topic: per partition the offsets ``[first, last + 1)`` holding
    them (``ranges``, actual topic names), and its streams."""

    meeting_id: str
    ranges: dict[TopicPartition, tuple[int, int]] = field(default_factory=dict)
    streams: dict[str, StreamSeen] = field(default_factory=dict)
    expired_partitions: list[int] = field(default_factory=list)  # see ``may_have_lost``

    @property
    def seconds(self) -> float:
        return sum(s.samples / s.sample_rate for s in self.streams.values())

    @property
    def live(self) -> bool:
        """Some stream has not stopped: the meeting goes on (or a stream ended without its stop)."""
        return any(not s.stopped for s in self.streams.values())

    def lost_beginnings(self) -> dict[str, int]:
        """Streams whose first record is not their ``stream.started`` at sample 0: stream -> the sample
        their first record starts at."""
        return {stream: seen.first_sample for stream, seen in sorted(self.streams.items())
                if seen.first != "stream.started" or seen.first_sample != 0}  # fmt: skip

    def note(self, record: ConsumerRecord) -> None:
        """Take a record of the meeting into account (records of a partition in offset order)."""
        tp = TopicPartition(record.topic, record.partition)
        first, _ = self.ranges.get(tp, (record.offset, 0))
        self.ranges[tp] = (first, record.offset + 1)
        headers = headers_dict(record.headers)
        stream = record.key.decode(errors="replace")
        if event_type(headers) == AUDIO_EVENT:
            try:
                first_sample, rate = int(headers["first_sample"]), int(headers["sample_rate"])
            except (KeyError, ValueError):
                return  # a bad frame: the replay skips it, as the workers dead-letter it
            seen = self.streams.setdefault(stream, StreamSeen(record.partition, AUDIO_EVENT, first_sample, rate))
            seen.samples += len(record.value or b"") // BYTES_PER_SAMPLE
            seen.stopped = False
            return
        try:
            event = decode(record.value)
        except (DecodeError, FrameHeaderError, ValueError):
            return
        if isinstance(event, StreamStartedV1):
            seen = self.streams.setdefault(stream, StreamSeen(record.partition, event.event, event.first_sample,
                                                              event.sample_rate))  # fmt: skip
            seen.stopped = False
        elif isinstance(event, StreamStoppedV1):
            seen = self.streams.setdefault(stream, StreamSeen(record.partition, event.event, event.end_sample,
                                                              event.sample_rate))  # fmt: skip
            seen.stopped = True


def may_have_lost(since_ms: int, now_ms: int, retention_ms: int, beginning: int, first_since: int | None) -> bool:
    """Whether retention may have deleted a partition's records from ``since_ms`` on: the partition has
    deleted records (``beginning`` > 0), its oldest record left is from after ``since_ms``
    (``first_since``, the first offset at or after ``since_ms``, is the oldest), and records from
    ``since_ms`` could have been old enough to go (retention deletes a segment once its newest record is
    older than ``retention_ms``)."""
    if retention_ms < 0 or since_ms >= now_ms - retention_ms:
        return False
    return beginning > 0 and first_since is not None and first_since <= beginning


Progress = Callable[[int, int], None]  # (records read, records to read)


async def scan(settings: Settings, meeting_id: str, since_ms: int | None, now_ms: int,
               progress: Progress | None = None) -> MeetingAudio:  # fmt: skip
    """The meeting's records on the audio topic, read from ``since_ms`` (the meeting's creation, wall clock
    ms; None: from each partition's oldest record) to the partitions' ends as they are now."""
    topic = topic_name(settings.topic_namespace, AUDIO_FRAMES.name)
    consumer = make_consumer(settings, None)
    await consumer.start()
    found = MeetingAudio(meeting_id)
    prefix = f"{meeting_id}/".encode()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return found
        beginnings, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        starts = dict(beginnings)
        if since_ms is not None:
            since = since_ms - SKEW_MARGIN_MS
            at = await consumer.offsets_for_times(dict.fromkeys(tps, max(0, since)))
            starts = {tp: ends[tp] if at[tp] is None else at[tp].offset for tp in tps}
            found.expired_partitions = [
                tp.partition for tp in tps
                if may_have_lost(since, now_ms, AUDIO_FRAMES.retention_ms, beginnings[tp],
                                 None if at[tp] is None else at[tp].offset)
            ]  # fmt: skip
        total = sum(ends[tp] - starts[tp] for tp in tps)
        reading = [tp for tp in tps if starts[tp] < ends[tp]]
        consumer.assign(reading)
        for tp in reading:
            consumer.seek(tp, starts[tp])
        done: dict[TopicPartition, int] = {}
        while reading:
            batches = await consumer.getmany(*reading, timeout_ms=500, max_records=2000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp] and record.key is not None and record.key.startswith(prefix):
                        found.note(record)
            for tp in list(reading):
                position = await consumer.position(tp)
                done[tp] = min(position, ends[tp]) - starts[tp]
                if position >= ends[tp]:
                    reading.remove(tp)
                    consumer.pause(tp)
            if progress is not None:
                progress(sum(done.values()), total)
    finally:
        await consumer.stop()
    return found

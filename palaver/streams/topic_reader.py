"""Reading a topic once, from a time (or its oldest record) to its partitions' ends as they are when the
reading starts: what the checker, the replay's backfill and other one-shot readers need. No consumer
group: nothing is committed."""

from __future__ import annotations

from collections.abc import Callable

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from palaver.events.registry import TopicSpec, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_consumer


async def read_topic(settings: Settings, spec: TopicSpec, since_ms: int | None, take: Callable[[ConsumerRecord], None],
                     partition_of: Callable[[int], int] | None = None) -> None:  # fmt: skip
    """Hand every record of ``spec``'s topic from ``since_ms`` (None: the oldest) to the partitions' ends as
    they are now to ``take``, in partition order. ``partition_of``: the one partition to read, from the
    topic's partition count (None: all)."""
    topic = topic_name(settings.topic_namespace, spec.name)
    consumer = make_consumer(settings, None)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        if partition_of is not None and partitions:
            partitions = {partition_of(len(partitions))}
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        if since_ms is not None:
            at = await consumer.offsets_for_times(dict.fromkeys(tps, max(0, since_ms)))
            starts = {tp: ends[tp] if at[tp] is None else at[tp].offset for tp in tps}
        reading = [tp for tp in tps if starts[tp] < ends[tp]]
        if not reading:
            return
        consumer.assign(reading)
        for tp in reading:
            consumer.seek(tp, starts[tp])
        while reading:
            batches = await consumer.getmany(*reading, timeout_ms=500, max_records=2000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < ends[tp]:
                        take(record)
            for tp in list(reading):
                if await consumer.position(tp) >= ends[tp]:
                    reading.remove(tp)
                    consumer.pause(tp)
    finally:
        await consumer.stop()

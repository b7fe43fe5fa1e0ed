"""A keyed state table held in memory and made durable in a compacted Kafka topic, its changelog.

The changelog is co-partitioned with the input the state is derived from: the state of a key read from
input partition p lives in changelog partition p. A consumer assigned input partition p restores p's keys
by reading changelog partition p to its end, and forgets them when p is revoked: the table moves with the
partition, as a Kafka Streams or faust table does, without a framework's per-message path.

Writes are buffered: ``put`` changes the value in memory and marks the key dirty; ``take_dirty`` (at a
checkpoint) and ``write`` (later) produce each dirty key's newest value once and wait for delivery. The
owner writes before it commits input offsets, so a committed offset never lies past state that could be
lost, and a busy key costs one changelog record per checkpoint, not one per event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from palaver.events.registry import TopicSpec, topic_name
from palaver.settings import Settings
from palaver.streams.clients import Message, make_consumer, send_batched

log = logging.getLogger(__name__)


class ChangelogTable:
    def __init__(self, settings: Settings, spec: TopicSpec,
                 consumer_factory: Callable[..., AIOKafkaConsumer] = make_consumer):  # fmt: skip
        """``consumer_factory`` takes ``make_consumer``'s arguments (tests pass an in-memory broker's)."""
        self._settings = settings
        self._consumer_factory = consumer_factory
        self.topic = topic_name(settings.topic_namespace, spec.name)
        self._data: dict[int, dict[str, Any]] = {}  # partition -> key -> value
        self._dirty: dict[tuple[int, str], Any] = {}

    def get(self, partition: int, key: str) -> Any | None:
        return self._data.get(partition, {}).get(key)

    def items(self) -> list[tuple[int, str, Any]]:
        """(partition, key, value) of every key held (the owned partitions')."""
        return [(partition, key, value) for partition, table in self._data.items() for key, value in table.items()]

    def put(self, partition: int, key: str, value: Any) -> None:
        """``value`` must be JSON-able, and not mutated after it is put (it is encoded when written)."""
        self._data.setdefault(partition, {})[key] = value
        self._dirty[(partition, key)] = value

    def delete(self, partition: int, key: str) -> None:
        """Forget ``key``: gone from memory now, a tombstone in the changelog when written (compaction then
        drops its records, and a restore does not bring it back)."""
        self._data.get(partition, {}).pop(key, None)
        self._dirty[(partition, key)] = None

    def take_dirty(self) -> dict[tuple[int, str], Any]:
        """The (partition, key) -> newest value written since the last call (None: deleted), to ``write``
        later."""
        dirty, self._dirty = self._dirty, {}
        return dirty

    async def write(self, producer: AIOKafkaProducer, values: dict[tuple[int, str], Any]) -> int:
        """Produce ``values`` to the changelog (None as a tombstone) and wait until all are delivered. Returns
        how many."""
        messages: list[Message] = [(partition, key.encode(), None if value is None else orjson.dumps(value), [])
                                   for (partition, key), value in values.items()]  # fmt: skip
        deliveries = await send_batched(producer, self.topic, messages)
        if deliveries:
            await asyncio.gather(*deliveries)
        return len(messages)

    async def restore(self, partitions: set[int]) -> int:
        """Load the keys of ``partitions`` from the changelog (newest record per key wins). Returns the
        number of records read."""
        if not partitions:
            return 0
        consumer = self._consumer_factory(self._settings, None)
        await consumer.start()
        read = 0
        try:
            tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            remaining = {tp for tp in tps if ends[tp] > 0}
            for tp in tps:
                self._data[tp.partition] = {}
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
                for tp, records in batches.items():
                    table = self._data[tp.partition]
                    for record in records:
                        key = record.key.decode()
                        if record.value is None:
                            table.pop(key, None)
                        else:
                            table[key] = orjson.loads(record.value)
                        read += 1
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
        finally:
            await consumer.stop()
        log.info("restored %d keys of partitions %s from %d changelog records", sum(len(self._data[p]) for p in partitions),
                 sorted(partitions), read)  # fmt: skip
        return read

    def forget(self, partitions: set[int]) -> None:
        """Drop the keys of partitions this process no longer owns (write first: unwritten values go too)."""
        for partition in partitions:
            self._data.pop(partition, None)
        self._dirty = {k: v for k, v in self._dirty.items() if k[0] not in partitions}

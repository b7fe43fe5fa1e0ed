"""An in-memory Kafka: the subset of aiokafka's consumer and producer that Palaver's consumer runner
(``palaver.streams.runner``), the changelog's restore, ``send_batched`` and the DLQ use, over partitions held
in lists, in one process. Unit tests of a service's loop run its real step on the real runner over this
(integration tests use the real broker), and ``palaver bench decode`` runs the real STT worker over it where
no broker runs (a GPU machine without Java), so that it measures the worker alone.

What it models: partitions and offsets, keys to partitions, headers, a consumer group's committed offsets
and metadata, one member per group that owns every partition (its ``on_partitions_assigned`` runs on the
first poll), positions, seek, pause, highwater, end offsets, tombstones (a None value); a topic exists from
its first use (``palaver up`` creates every topic before a service starts). What it does not: replication,
transactions, rebalances between members (call ``MemoryConsumer.rebalance`` to revoke and assign again). A
record's timestamp is its append time (wall clock, ms), as on a topic with ``LogAppendTime``.

For tests of order and failure: ``MemoryBroker.history`` lists every append and commit in the order they
happened; ``MemoryProducer.hold``/``release`` keep deliveries in flight (a slow broker) and ``fail_next`` fails
them; ``MemoryConsumer.fail_next_commits`` fails commits (the coordinator unreachable) and
``announce_assignments_late`` hands out records of a new assignment one poll before its callback runs.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord, OffsetAndMetadata, RecordMetadata


class MemoryBroker:
    def __init__(self, partitions: int = 3):
        self.default_partitions = partitions
        self.logs: dict[str, list[list[ConsumerRecord]]] = {}
        self.committed: dict[tuple[str, TopicPartition], OffsetAndMetadata] = {}
        # ("append", topic, partition, offset) and ("commit", group, topic, partition, offset), in order.
        self.history: list[tuple[Any, ...]] = []
        self._waiters: set[asyncio.Event] = set()  # polls waiting for a record

    def create(self, topic: str, partitions: int | None = None) -> None:
        self.logs.setdefault(topic, [[] for _ in range(partitions or self.default_partitions)])

    def partition_for(self, topic: str, key: bytes | None) -> int:
        self.create(topic)
        return zlib.crc32(key or b"") % len(self.logs[topic])

    def append(self, topic: str, value: bytes | None, key: bytes | None = None, headers: Iterable[tuple[str, bytes]] = (),
               partition: int | None = None) -> RecordMetadata:  # fmt: skip
        self.create(topic)
        p = self.partition_for(topic, key) if partition is None else partition
        log = self.logs[topic][p]
        record = ConsumerRecord(topic=topic, partition=p, offset=len(log), timestamp=time.time_ns() // 1_000_000, timestamp_type=0, key=key,
                                value=value, checksum=None, serialized_key_size=len(key or b""),
                                serialized_value_size=len(value or b""), headers=tuple(headers))  # fmt: skip
        log.append(record)
        self.history.append(("append", topic, p, record.offset))
        self.wake()
        return RecordMetadata(topic, p, TopicPartition(topic, p), record.offset, 0, 0, 0)

    def records(self, topic: str) -> list[ConsumerRecord]:
        """Every record of ``topic``, partition by partition."""
        return [r for log in self.logs.get(topic, []) for r in log]

    def wake(self) -> None:
        """End every poll waiting for a record (a test that stops a runner need not wait out its poll)."""
        for waiter in self._waiters:
            waiter.set()

    async def wait_for_append(self, timeout_s: float) -> None:
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter.wait(), timeout_s)
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)

    def consumer(self, settings: object, group: str | None, *topics: str, **config: Any) -> MemoryConsumer:
        """A ``make_consumer`` stand-in (``ConsumerRunner(consumer_factory=broker.consumer)``)."""
        return MemoryConsumer(self, group, topics, config)

    def producer(self) -> MemoryProducer:
        return MemoryProducer(self)


class MemoryConsumer:
    def __init__(self, broker: MemoryBroker, group: str | None, topics: Iterable[str], config: dict[str, Any]):
        self._broker = broker
        self._group = group
        self._from_end = config.get("auto_offset_reset") == "latest"
        self._assigned: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self._listener: Any = None
        self._subscribed: list[str] = list(topics)
        self._pending_assignment = False
        self._unannounced: set[TopicPartition] | None = None  # assigned, its callback not run yet
        self._commit_failures: list[BaseException] = []
        # True: a new assignment's records come one poll before its on_partitions_assigned (a fetch that
        # raced the callback); the poll after runs the callback first.
        self.announce_assignments_late = False
        self.commits: list[dict[TopicPartition, Any]] = []  # every commit, in order
        self._coordinator = self  # aiokafka's private fetch of committed metadata
        self._client = self  # aiokafka's private metadata refresh

    async def start(self) -> None:
        for topic in self._subscribed:
            self._broker.create(topic)

    async def stop(self) -> None:
        pass

    def subscribe(self, topics: list[str], listener: Any = None) -> None:
        for topic in topics:
            self._broker.create(topic)
        self._subscribed, self._listener, self._pending_assignment = list(topics), listener, True

    async def rebalance(self) -> None:
        """Revoke every partition and assign them again, as a group rebalance does (on the next poll)."""
        revoked = set(self._assigned)
        self._assigned = []
        if self._listener is not None:
            await self._listener.on_partitions_revoked(revoked)
        self._pending_assignment = True

    async def _assign_subscribed(self) -> None:
        self._pending_assignment = False
        tps = [TopicPartition(t, p) for t in self._subscribed for p in range(len(self._broker.logs[t]))]
        self.assign(tps)
        for tp in tps:
            committed = self._committed(tp)
            self._positions[tp] = committed.offset if committed else 0
        if self.announce_assignments_late:
            self._unannounced = set(tps)
        elif self._listener is not None:
            await self._listener.on_partitions_assigned(set(tps))

    def assign(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self._broker.create(tp.topic)
        self._assigned = list(tps)
        for tp in tps:
            self._positions.setdefault(tp, len(self._log(tp)) if self._from_end else 0)

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(len(self._broker.logs.get(topic, []))))

    async def force_metadata_update(self) -> None:
        pass

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int = 0,
                      max_records: int | None = None) -> dict[TopicPartition, list[ConsumerRecord]]:  # fmt: skip
        if self._unannounced is not None:
            announced, self._unannounced = self._unannounced, None
            if self._listener is not None:
                await self._listener.on_partitions_assigned(announced)
        if self._pending_assignment:
            await self._assign_subscribed()
        only = set(partitions) or None
        batches = self._take(max_records or 500, only)
        if not batches and timeout_ms:
            await self._broker.wait_for_append(timeout_ms / 1000)
            batches = self._take(max_records or 500, only)
        return batches

    def _take(self, limit: int, only: set[TopicPartition] | None) -> dict[TopicPartition, list[ConsumerRecord]]:
        batches: dict[TopicPartition, list[ConsumerRecord]] = {}
        for tp in self._assigned:
            if tp in self._paused or limit <= 0 or (only is not None and tp not in only):
                continue
            records = self._log(tp)[self._positions[tp] : self._positions[tp] + limit]
            if records:
                batches[tp] = records
                self._positions[tp] += len(records)
                limit -= len(records)
        return batches

    def _log(self, tp: TopicPartition) -> list[ConsumerRecord]:
        return self._broker.logs[tp.topic][tp.partition]

    def fail_next_commits(self, commits: int, error: BaseException | None = None) -> None:
        """The next ``commits`` commits raise ``error`` (default: the coordinator unreachable) and commit
        nothing."""
        self._commit_failures = [error or KafkaConnectionError("memory broker: commit failed")] * commits

    async def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        assert self._group is not None, "a group-less consumer commits nothing"
        if self._commit_failures:
            raise self._commit_failures.pop(0)
        for tp, offset in offsets.items():
            value, metadata = offset if isinstance(offset, tuple) else (offset, "")
            self._broker.committed[(self._group, tp)] = OffsetAndMetadata(value, metadata)
            self._broker.history.append(("commit", self._group, tp.topic, tp.partition, value))
        self.commits.append(dict(offsets))

    def _committed(self, tp: TopicPartition) -> OffsetAndMetadata | None:
        return self._broker.committed.get((self._group or "", tp))

    async def committed(self, tp: TopicPartition) -> int | None:
        found = self._committed(tp)
        return found.offset if found else None

    async def fetch_committed_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata]:
        return {tp: self._committed(tp) or OffsetAndMetadata(-1, "") for tp in tps}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self._positions[tp] = 0

    async def seek_to_end(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self._positions[tp] = len(self._log(tp))

    async def position(self, tp: TopicPartition) -> int:
        return self._positions[tp]

    def highwater(self, tp: TopicPartition) -> int:
        return len(self._log(tp))

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self._log(tp)) for tp in tps}

    def pause(self, *tps: TopicPartition) -> None:
        self._paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused -= set(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)


class _Batch:
    def __init__(self) -> None:
        self.messages: list[tuple[bytes | None, bytes, tuple[tuple[str, bytes], ...]]] = []

    def append(self, key: bytes | None, value: bytes, timestamp: object, headers: Iterable[tuple[str, bytes]]) -> object:
        self.messages.append((key, value, tuple(headers)))
        return object()  # never full


# topic, value, key, headers, partition, and the delivery's future
_Held = tuple[str, bytes, bytes | None, tuple[tuple[str, bytes], ...], int | None, "asyncio.Future[RecordMetadata]"]


class MemoryProducer:
    """Delivers at once; ``fail_next(n)`` makes the next n deliveries fail (an unreachable broker);
    ``hold()`` keeps deliveries in flight until ``release`` (a slow broker)."""

    def __init__(self, broker: MemoryBroker):
        self._broker = broker
        self._failures = 0
        self._holding = False
        self.held: list[_Held] = []  # deliveries in flight, oldest first
        self.sent: dict[str, list[bytes]] = defaultdict(list)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def fail_next(self, deliveries: int) -> None:
        self._failures = deliveries

    def hold(self) -> None:
        """From now on a delivery stays in flight (its record not appended, its future pending) until
        ``release``."""
        self._holding = True

    def release(self, deliveries: int | None = None) -> None:
        """Deliver the oldest ``deliveries`` held (all: None), in order; with none given, stop holding.
        Call it on the event loop that sent them."""
        if deliveries is None:
            self._holding = False
        count = len(self.held) if deliveries is None else deliveries
        released, self.held = self.held[:count], self.held[count:]
        for topic, value, key, headers, partition, future in released:
            self.sent[topic].append(value)
            future.set_result(self._broker.append(topic, value, key, headers, partition))

    def _deliver(self, topic: str, value: bytes, key: bytes | None, headers: Iterable[tuple[str, bytes]],
                 partition: int | None) -> asyncio.Future[RecordMetadata]:  # fmt: skip
        future: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        if self._failures:
            self._failures -= 1
            from aiokafka.errors import KafkaTimeoutError

            future.set_exception(KafkaTimeoutError("memory broker: delivery failed"))
            return future
        if self._holding:
            self.held.append((topic, value, key, tuple(headers), partition, future))
            return future
        self.sent[topic].append(value)
        future.set_result(self._broker.append(topic, value, key, headers, partition))
        return future

    async def send(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
                   headers: Iterable[tuple[str, bytes]] = ()) -> asyncio.Future[RecordMetadata]:  # fmt: skip
        return self._deliver(topic, value, key, headers or (), partition)

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None, partition: int | None = None,
                            headers: Iterable[tuple[str, bytes]] = ()) -> RecordMetadata:  # fmt: skip
        return await self._deliver(topic, value, key, headers or (), partition)

    def create_batch(self) -> _Batch:
        return _Batch()

    async def send_batch(self, batch: _Batch, topic: str, partition: int) -> asyncio.Future[RecordMetadata]:
        last: asyncio.Future[RecordMetadata] | None = None
        for key, value, headers in batch.messages:
            last = self._deliver(topic, value, key, headers, partition)
        assert last is not None
        return last

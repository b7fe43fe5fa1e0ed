"""The meetings' timelines every ingest process shares: the compacted ``ingest.timelines`` topic, folded.

Each ingest process reads the whole topic from its beginning and keeps following it (no consumer group:
every process holds every meeting's timeline; a timeline is a few numbers per stream), folding each
record into the meeting's timeline with ``ingest.clock.merge``. All processes fold the same records in
the same order (one meeting's records share its partition), so they hold the same timelines.

A connection is placed by ``write``: produce the proposed record, wait until the follower reads it back,
and answer with the fold just before and just after it. Everything any process wrote before is then
folded in, so a placement is linearizable: when two processes place streams of one meeting at the same
moment, the record the partition took first fixes the epoch (and a stream's start), and both answer
from it. This costs one produce and one read-back per connection, nothing per frame.

Compaction keeps a meeting's last record only, so the last record must state the whole fold: a process
that reads back a record of its own that states less (it wrote from a view that missed a concurrent
record) writes the fold again, once per such record. ``min.compaction.lag.ms`` (a day) leaves time for
that even across a crash of the writer and its restart (a restarted process does not repair the records
of its previous life; its next write of the meeting does).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import Callable
from typing import NamedTuple

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaTimeoutError
from aiokafka.structs import ConsumerRecord

from ingest.clock import Timeline, merge
from palaver.events.registry import INGEST_TIMELINES, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_consumer

log = logging.getLogger(__name__)

READ_BACK_TIMEOUT_S = 15.0  # a write not read back by then fails like an unreachable broker

class Written(NamedTuple):
    before: Timeline | None  # the meeting's timeline just before the record
    after: Timeline | None  # and just after it
    where: str  # the record's place in the topic, "partition@offset": unique, durable


Fold = tuple[Timeline | None, Timeline | None]


class TimelineLog:
    def __init__(self, settings: Settings, producer: AIOKafkaProducer,
                 consumer_factory: Callable[..., AIOKafkaConsumer] = make_consumer):  # fmt: skip
        """``consumer_factory`` takes ``make_consumer``'s arguments (tests pass an in-memory broker's)."""
        self._settings = settings
        self._producer = producer
        self._consumer_factory = consumer_factory
        self.topic = topic_name(settings.topic_namespace, INGEST_TIMELINES.name)
        self.timelines: dict[str, Timeline] = {}  # meeting -> the fold of its records read so far
        self._writer = uuid.uuid4().hex.encode()  # this process's records, recognised when read back
        self._seq = itertools.count()
        self._waiting: dict[bytes, asyncio.Future[Fold]] = {}
        self._following: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()  # restatements in flight (held: tasks are weak)

    async def start(self) -> None:
        """Start following the topic from its beginning (returns at once; ``write`` waits for the fold)."""
        self.timelines = {}
        consumer = self._consumer_factory(self._settings, None)
        await consumer.start()
        tps = [TopicPartition(self.topic, p) for p in range(INGEST_TIMELINES.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        self._following = asyncio.create_task(self._follow(consumer), name="ingest timelines")

    async def stop(self) -> None:
        if self._following is not None:
            self._following.cancel()
            await asyncio.gather(self._following, return_exceptions=True)
            self._following = None

    async def write(self, meeting_id: str, timeline: Timeline | None) -> Written:
        """Write ``timeline`` as the meeting's record (None: a tombstone), wait until it is read back, and
        return the fold just before and just after it, and where it is. Raises KafkaError when the broker does not take it
        or it is not read back within ``READ_BACK_TIMEOUT_S``."""
        if self._following is None or self._following.done():  # not started with the app (a test's app has
            await self.start()  # no lifespan), or the follower failed (logged): fold the topic again
        mark = b"%d" % next(self._seq)
        waiter: asyncio.Future[Fold] = asyncio.get_running_loop().create_future()
        self._waiting[mark] = waiter
        try:
            value = None if timeline is None else orjson.dumps(timeline.to_json())
            sent = await self._producer.send_and_wait(self.topic, value, key=meeting_id.encode(),
                                                      headers=[("writer", self._writer), ("mark", mark)])  # fmt: skip
            try:
                before, after = await asyncio.wait_for(asyncio.shield(waiter), READ_BACK_TIMEOUT_S)
            except TimeoutError:
                raise KafkaTimeoutError(f"{self.topic}: own record not read back in {READ_BACK_TIMEOUT_S:.0f}s") from None
            return Written(before, after, f"{sent.partition}@{sent.offset}")
        finally:
            self._waiting.pop(mark, None)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
                for records in batches.values():
                    for record in records:
                        self._apply(record)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bad environment: the next write starts following again
            log.exception("following %s failed", self.topic)
            raise
        finally:
            await consumer.stop()

    def _apply(self, record: ConsumerRecord) -> None:
        meeting_id = record.key.decode()
        try:
            stated = None if record.value is None else Timeline.from_json(orjson.loads(record.value))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            log.warning("%s: skipped an unreadable record at %d/%d", self.topic, record.partition, record.offset)
            return
        before = self.timelines.get(meeting_id)
        after = merge(before, stated)
        if after is None:
            self.timelines.pop(meeting_id, None)
        else:
            self.timelines[meeting_id] = after
        headers = dict(record.headers or ())
        if headers.get("writer") != self._writer:
            return
        waiter = self._waiting.get(headers.get("mark", b""))
        if waiter is not None and not waiter.done():
            waiter.set_result((before, after))
        if after != stated:  # our record stated less than the fold: compaction must not keep it last
            task = asyncio.get_running_loop().create_task(self._repair(meeting_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _repair(self, meeting_id: str) -> None:
        """Write the meeting's fold as it is now (read back, it is checked as any own record is)."""
        timeline = self.timelines.get(meeting_id)
        if timeline is None:
            return
        try:
            await self.write(meeting_id, timeline)
        except Exception as exc:  # the next write of the meeting states the fold as well
            log.warning("%s: could not restate meeting %s: %r", self.topic, meeting_id, exc)

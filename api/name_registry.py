"""The name registry: the one place that decides who holds a username or an email.

A step of the consumer runner (``palaver.streams.runner``) in the ``names`` consumer group. Every API
process runs a member, and the group gives each partition of ``name.claims`` to exactly one of them, so
each name (the message key) has exactly one decider at a time, which decides its requests one after the
other in log order (``api.names.decide``) and sends each claim's decision to ``name.decisions``. However
many API processes race for a name, its claims meet in one partition and exactly one is granted.

The state (name -> owner) lives in a changelog table (``palaver.streams.changelog``, topic
``name.owners``) co-partitioned with ``name.claims``, restored on assignment as the merger restores its
state. Checkpoints make progress durable in the merger's order: the decisions sent are delivered, then the
changed names are written to the changelog, then (the runner) the input offsets are committed; a request
read again after a crash is recognised by its offset (see ``api.names``).

First start in a deployment that has users: a partition whose changelog holds no seed mark learns the
names the users topic holds (its live users' names that belong to this partition) before it decides
anything, then marks itself seeded (written with its next checkpoint). The users topic is the system of
record and is compacted, so this reads one record per user, once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from api.names import SEEDED_OFFSET, decide, names_in_use, partition_of
from palaver import ids
from palaver.events import decode_on, encode
from palaver.events.name_claims_v1 import NameClaimV1, NameDecisionV1, NameReleaseV1
from palaver.events.registry import NAME_CLAIMS, NAME_DECISIONS, NAME_OWNERS, USERS, topic_name
from palaver.events.users_v1 import UserChangedV1
from palaver.settings import Settings
from palaver.streams.changelog import ChangelogTable
from palaver.streams.clients import Message, make_consumer, make_producer, send_batched
from palaver.streams.runner import Checkpoint, Committed, ConsumerRunner, Offsets, RunnerConfig, Step

log = logging.getLogger(__name__)

GROUP = "names"
SEED_MARK = "seeded"  # a changelog key no name can be: names hold a colon
RUNNER = RunnerConfig(service=GROUP, topics=(NAME_CLAIMS,), group=GROUP, poll_ms=50, checkpoint_interval_s=0.2)
READY = "name registry assigned"


def _now_ms() -> int:
    return int(time.time() * 1000)


class NameRegistryStep(Step):
    def __init__(self, settings: Settings, producer: AIOKafkaProducer,
                 consumer_factory: Callable[..., AIOKafkaConsumer] = make_consumer,
                 clock: Callable[[], int] = _now_ms):  # fmt: skip
        """``consumer_factory`` makes the consumers that restore the state and read the users topic
        (``make_consumer``'s arguments); ``clock``: ms since the epoch, for the decisions' time."""
        self._settings = settings
        self._producer = producer
        self._consumer_factory = consumer_factory
        self._clock = clock
        self._table = ChangelogTable(settings, NAME_OWNERS, consumer_factory)
        self._decisions = topic_name(settings.topic_namespace, NAME_DECISIONS.name)
        self._outputs: list[Message] = []  # decisions of this batch
        self._deliveries: list[asyncio.Future[object]] = []  # decisions sent since the last checkpoint

    def process(self, record: ConsumerRecord) -> None:
        request = decode_on(NAME_CLAIMS, record.value)
        assert isinstance(request, NameClaimV1 | NameReleaseV1)
        before = self._table.get(record.partition, request.name)
        decision = decide(before, request, record.offset)
        if decision.state is not before:
            self._table.put(record.partition, request.name, decision.state)
        if decision.granted is None:
            return
        answer = NameDecisionV1(event_id=ids.event_id("name.decision", request.request_id),
                                request_id=request.request_id, name=request.name, user_id=request.user_id,
                                granted=decision.granted, decided_at_ms=self._clock())  # fmt: skip
        partition = partition_of(request.name, NAME_DECISIONS.partitions)
        self._outputs.append((partition, request.name.encode(), encode(answer), []))
        log.info("name %s %s to %s", request.name.partition(":")[0], "granted" if decision.granted else "refused",
                 request.user_id)  # fmt: skip

    async def after_batch(self) -> None:
        if self._outputs:
            outputs, self._outputs = self._outputs, []
            self._deliveries.extend(await send_batched(self._producer, self._decisions, outputs))

    async def snapshot(self, offsets: Offsets, final: bool) -> Checkpoint | None:
        deliveries, self._deliveries = self._deliveries, []
        states = self._table.take_dirty()
        if not (offsets or deliveries or states):
            return Checkpoint({}) if final else None

        async def persist() -> None:
            if deliveries:
                await asyncio.gather(*deliveries)  # a failed delivery raises: the service stops, input is re-read
            await self._table.write(self._producer, states)

        return Checkpoint(offsets, persist)

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        partitions = {tp.partition for tp in committed}
        await self._table.restore(partitions)
        unseeded = {p for p in partitions if self._table.get(p, SEED_MARK) is None}
        if unseeded:
            await self._seed(unseeded)
        log.info("%s: partitions %s", READY, sorted(partitions))

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        self._table.forget({tp.partition for tp in partitions})

    async def _seed(self, partitions: set[int]) -> None:
        """Learn the names live users hold in ``partitions`` from the users topic, then mark them seeded."""
        users = [decode_on(USERS, r.value) for r in await read_to_end(self._settings, USERS.name, self._consumer_factory)]
        owners = names_in_use(u for u in users if isinstance(u, UserChangedV1))
        learnt = 0
        for name, owner in owners.items():
            partition = partition_of(name, NAME_CLAIMS.partitions)
            if partition in partitions and self._table.get(partition, name) is None:
                self._table.put(partition, name, {"owner": owner, "offset": SEEDED_OFFSET})
                learnt += 1
        for partition in partitions:
            self._table.put(partition, SEED_MARK, {"users": len(users)})
        log.info("name registry: learnt %d names in use from %d user events (partitions %s)", learnt, len(users),
                 sorted(partitions))  # fmt: skip


async def read_to_end(settings: Settings, name: str, consumer_factory: Callable[..., AIOKafkaConsumer]) -> list[ConsumerRecord]:
    """Every record of a (small, compacted) topic, as it is now, without a group."""
    consumer = consumer_factory(settings, None)
    await consumer.start()
    try:
        topic = topic_name(settings.topic_namespace, name)
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        out: list[ConsumerRecord] = []
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
            for records in batches.values():
                out += [r for r in records if r.value is not None]
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
        return out
    finally:
        await consumer.stop()


async def run_name_registry(settings: Settings, stop: asyncio.Event,
                            consumer_factory: Callable[..., AIOKafkaConsumer] = make_consumer) -> None:  # fmt: skip
    """Decide name claims (one member of the ``names`` group) until ``stop`` is set."""
    producer = make_producer(settings, linger_ms=1)
    await producer.start()
    try:
        step = NameRegistryStep(settings, producer, consumer_factory)
        await ConsumerRunner(settings, RUNNER, step, producer, consumer_factory).run(stop)
    finally:
        await producer.stop()

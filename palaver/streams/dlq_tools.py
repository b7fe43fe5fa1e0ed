"""Reading dead-letter topics and replaying their records to the source topic (the ``palaver dlq``
command's Kafka side).

Replay is remembered: after a replayed copy is acknowledged on the source topic, a mark (``ReplayMark``)
goes to the ``dlq.replays`` topic, keyed by the dead letter's DLQ topic and offset. ``replay --all``
skips marked dead letters; replaying a marked one by offset is refused unless forced. A crash between
the copy and its mark sends that one again on the next replay: at least once, as everywhere in Palaver
(consumers deduplicate by deterministic ids).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.structs import ConsumerRecord

from palaver.events.registry import DLQ_REPLAYS, TOPICS, all_topics, topic_name
from palaver.settings import Settings
from palaver.streams.clients import ensure_topics, make_admin, make_consumer, make_producer
from palaver.streams.dlq_records import (
    DeadLetter,
    ReplayMark,
    parse_dead_letter,
    replay_headers,
    replay_key,
    utc_text,
)


class DlqToolError(Exception):
    """A ``palaver dlq`` request that cannot be done; the message says why, for people."""


@dataclass(frozen=True)
class DlqRef:
    """A dead-letter topic and the topic its records came from, full names (namespace applied)."""

    source: str
    dlq: str


def resolve(settings: Settings, name: str) -> DlqRef:
    """The DLQ of a registry topic named by itself (``transcripts``) or by its DLQ (``transcripts.dlq``),
    with or without the settings' namespace prefix. Raises ``DlqToolError`` for an unknown topic or one
    without a DLQ."""
    ns = settings.topic_namespace
    bare = name.removeprefix(f"{ns}.") if ns else name
    for spec in TOPICS:
        if spec.dlq and bare in (spec.name, spec.dlq):
            return DlqRef(topic_name(ns, spec.name), topic_name(ns, spec.dlq))
    if any(spec.name == bare for spec in all_topics()):
        raise DlqToolError(f"{name} has no dead-letter topic")
    with_dlq = ", ".join(spec.name for spec in TOPICS if spec.dlq)
    raise DlqToolError(f"unknown topic {name!r}; topics with a dead-letter topic: {with_dlq}")


@dataclass(frozen=True)
class DlqContents:
    letters: list[DeadLetter]  # in DLQ offset order
    marks: dict[int, ReplayMark]  # DLQ offset -> its newest replay

    def select(self, offset: int | None) -> list[DeadLetter]:
        """All dead letters (``offset`` None) or the one at ``offset``; raises ``DlqToolError`` when there
        is none."""
        if not self.letters:
            raise DlqToolError("no dead letters")
        if offset is None:
            return self.letters
        found = [letter for letter in self.letters if letter.dlq_offset == offset]
        if not found:
            first, last = self.letters[0].dlq_offset, self.letters[-1].dlq_offset
            raise DlqToolError(f"no dead letter at offset {offset} (offsets {first} to {last})")
        return found


async def load(settings: Settings, ref: DlqRef) -> DlqContents:
    """Every dead letter of ``ref`` still retained, and which of them were replayed. Raises
    ``DlqToolError`` when the broker does not answer, the DLQ topic does not exist or it is empty."""
    partitions = await _topic_partitions(settings)
    if ref.dlq not in partitions:
        raise DlqToolError(f"topic {ref.dlq} does not exist (palaver topics --create creates it)")
    async with _reader(settings) as consumer:
        letters = [
            parse_dead_letter(ref.dlq, r.offset, r.key, r.value, list(r.headers or ()), r.timestamp)
            for r in await _read_to_end(consumer, ref.dlq, partitions[ref.dlq])
        ]
        if not letters:
            raise DlqToolError(f"{ref.dlq} is empty: no dead letters")
        replays = topic_name(settings.topic_namespace, DLQ_REPLAYS.name)
        marks = (
            await _read_marks(consumer, replays, partitions[replays], ref) if replays in partitions else {}
        )
    return DlqContents(letters, marks)


@dataclass(frozen=True)
class ReplayOutcome:
    replayed: list[ReplayMark]
    skipped: list[DeadLetter]  # replayed before, not forced


async def replay(settings: Settings, ref: DlqRef, offset: int | None, force: bool = False) -> ReplayOutcome:
    """Send the dead letter at ``offset`` (None: every one) back to its source topic and partition: same
    key, value and headers, less the ``dlq.*`` ones, plus ``dlq.replayed.from``. Dead letters replayed
    before are skipped (``offset`` None) or refused (``DlqToolError``), unless ``force``. Returns once every
    copy and every mark is acknowledged."""
    contents = await load(settings, ref)
    chosen = contents.select(offset)
    if offset is not None and not force and offset in contents.marks:
        mark = contents.marks[offset]
        raise DlqToolError(f"{ref.dlq}@{offset} was replayed already (to {mark.topic}[{mark.partition}]@"
                           f"{mark.offset} at {mark.time}); --force sends it again")  # fmt: skip
    todo = [letter for letter in chosen if force or letter.dlq_offset not in contents.marks]
    skipped = [letter for letter in chosen if not force and letter.dlq_offset in contents.marks]
    if not todo:
        return ReplayOutcome([], skipped)
    with _kafka_errors(settings):
        await ensure_topics(settings, [DLQ_REPLAYS])
    producer = make_producer(settings)
    with _kafka_errors(settings):
        try:
            await producer.start()
            partitions = await producer.partitions_for(ref.source)
            copies = [
                await producer.send(
                    ref.source,
                    letter.value,
                    key=letter.key,
                    headers=replay_headers(letter.headers, ref.dlq, letter.dlq_offset),
                    partition=_same_partition(letter, partitions),
                )
                for letter in todo
            ]
            landed = await asyncio.gather(*copies)
            now = utc_text(time.time())
            marks = [ReplayMark(ref.dlq, letter.dlq_offset, meta.topic, meta.partition, meta.offset, now)
                     for letter, meta in zip(todo, landed, strict=True)]  # fmt: skip
            replays_topic = topic_name(settings.topic_namespace, DLQ_REPLAYS.name)
            await asyncio.gather(
                *[await producer.send(replays_topic, mark.encode(), key=mark.key) for mark in marks]
            )
        finally:
            await producer.stop()
    return ReplayOutcome(marks, skipped)


def _same_partition(letter: DeadLetter, partitions: Iterable[int]) -> int | None:
    """The partition the record was read from (its key's owner), if the topic still has it; else None
    (the key's partition by the default partitioner)."""
    return letter.source_partition if letter.source_partition in set(partitions) else None


async def _read_marks(
    consumer: AIOKafkaConsumer, topic: str, partitions: set[int], ref: DlqRef
) -> dict[int, ReplayMark]:
    marks: dict[int, ReplayMark] = {}
    prefix = replay_key(ref.dlq, 0)[:-1]
    for record in await _read_to_end(consumer, topic, partitions):
        if record.key and record.key.startswith(prefix) and record.value is not None:
            mark = ReplayMark.decode(record.value)
            marks[mark.dlq_offset] = mark
    return marks


async def _read_to_end(consumer: AIOKafkaConsumer, topic: str, partitions: set[int]) -> list[ConsumerRecord]:
    """Every record of one-partition ``topic`` up to its end now, in offset order."""
    if partitions != {0}:
        raise DlqToolError(
            f"{topic} has partitions {sorted(partitions)}; palaver dlq reads one-partition topics"
        )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    end = (await consumer.end_offsets([tp]))[tp]
    records: list[ConsumerRecord] = []
    while await consumer.position(tp) < end:
        batch = await consumer.getmany(tp, timeout_ms=500, max_records=1000)
        records.extend(r for r in batch.get(tp, ()) if r.offset < end)
    return records


async def _topic_partitions(settings: Settings) -> dict[str, set[int]]:
    """Every topic's partitions (asked for all topics: asking for one by name could create it on a broker
    that auto-creates topics)."""
    admin = make_admin(settings)
    with _kafka_errors(settings):
        try:
            await admin.start()
            described = await admin.describe_topics()
        finally:
            await admin.close()
    return {t["topic"]: {p["partition"] for p in t["partitions"]} for t in described}


@asynccontextmanager
async def _reader(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """A group-less consumer, to be assigned at once (aiokafka 0.14 raises CancelledError when a group-less
    consumer stops before its first await after start)."""
    consumer = make_consumer(settings, None)
    with _kafka_errors(settings):
        try:
            await consumer.start()
            yield consumer
        finally:
            await consumer.stop()


@contextmanager
def _kafka_errors(settings: Settings) -> Iterator[None]:
    """Turns a broker that does not answer (or refuses) into a ``DlqToolError`` naming the broker."""
    try:
        yield
    except KafkaConnectionError as exc:
        raise DlqToolError(f"Kafka at {settings.bootstrap_servers} does not answer: {exc}") from exc
    except KafkaError as exc:
        raise DlqToolError(f"Kafka at {settings.bootstrap_servers}: {exc!r}") from exc

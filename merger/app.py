"""The merger service: a consumer-group loop around the pure ``merger.processor.apply``.

Each batch of transcript events is folded into per-meeting state; the batch's dialogue events are
conflated (``merger.processor.conflate``: only the newest revision of each box) and sent at once, without
waiting for the broker, so the next batch merges while they travel. The state lives in a changelog table
(``palaver.streams.changelog``) co-partitioned with the transcripts topic.

Checkpoints (every ``CHECKPOINT_S`` in the background while merging goes on, and awaited on revocation
and at shutdown) make progress durable in one order, one checkpoint after the other: every output sent up
to the checkpoint is delivered, then the states changed up to it are written to the changelog, then the
input offsets merged up to it are committed. So a committed offset never lies past an output or a state that could be
lost. After a crash the new owner restores the state of the last checkpoint (or a newer one) and re-reads
the input after the committed offset; ``apply`` recognises events the state has already seen, and the
events it merges again produce the same dialogue revisions (same ids, same content) as before: no loss,
no duplicates that the readers' upserts do not absorb.

Why not a faust agent: faust's per-message stream path (a task and futures per message) alone caps a
do-nothing agent at about 5,000-8,000 events/s on our 2-core machine (``palaver bench merger`` measures it
side by side), below the merger's target once merging is added; this loop does the same with batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord

from merger.processor import Update, apply, conflate, new_state
from palaver.events import DecodeError, decode, encode
from palaver.events.registry import DIALOGUES, MERGER_STATE, TRANSCRIPTS, topic_name
from palaver.metrics import MERGER_DIALOGUE_UPDATES
from palaver.settings import Settings
from palaver.streams.changelog import ChangelogTable
from palaver.streams.clients import make_consumer, make_producer, send_batched
from palaver.streams.dlq import DlqPolicy, dlq_topics

log = logging.getLogger(__name__)

GROUP = "merger"
BATCH_MAX = 500  # records per poll: conflation gains with size, the first record waits for the batch
POLL_MS = 20  # longest wait for input when idle
CHECKPOINT_S = 0.25  # how often outputs, state and offsets are made durable
READY = "merger ready"


class Merger:
    def __init__(self, settings: Settings):
        self._settings = settings
        ns = settings.topic_namespace
        self._input = topic_name(ns, TRANSCRIPTS.name)
        self._output = topic_name(ns, DIALOGUES.name)
        self._table = ChangelogTable(settings, MERGER_STATE)
        self._processed: dict[TopicPartition, int] = {}  # next offset after the last record merged
        self._deliveries: list[asyncio.Future[Any]] = []  # outputs sent since the last checkpoint
        self._generation = 0  # bumped by each rebalance callback
        self._lock = asyncio.Lock()  # held by a batch, a checkpoint, and a rebalance callback
        self._last_checkpoint = time.monotonic()
        self._checkpointing: asyncio.Future[None] | None = None  # the checkpoint in progress
        self._ready = False

    async def run(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self._settings, GROUP, max_poll_records=BATCH_MAX, max_partition_fetch_bytes=4 << 20)
        self._producer = make_producer(self._settings, linger_ms=2)
        await self._producer.start()
        await consumer.start()
        self._dlq = DlqPolicy(self._producer, dlq_topics(self._settings, TRANSCRIPTS), GROUP)
        consumer.subscribe([self._input], listener=_Rebalance(self, consumer))
        log.info("merger consuming %s", self._input)
        try:
            while not stop.is_set():
                generation = self._generation
                batches = await consumer.getmany(timeout_ms=POLL_MS, max_records=BATCH_MAX)
                async with self._lock:
                    if generation != self._generation:
                        await _rewind(consumer, batches)
                        continue
                    await self._merge(batches)
                    if self._checkpointing is not None and self._checkpointing.done():
                        self._checkpointing.result()  # raises what a checkpoint met
                    if time.monotonic() - self._last_checkpoint >= CHECKPOINT_S:
                        self._begin_checkpoint(consumer)
            async with self._lock:
                await self._checkpoint(consumer)
        finally:
            await consumer.stop()
            await self._producer.stop()

    async def _merge(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        outputs: list[tuple[Update, tuple[int, list[tuple[str, bytes]]]]] = []
        pause_ms = self._settings.merger_pause_ms
        for tp, records in batches.items():
            for record in records:
                try:
                    event = decode(record.value)
                    meeting_id = event.meeting_id  # type: ignore[attr-defined]
                except (DecodeError, AttributeError) as exc:
                    await self._dlq.dead_letter(record, f"not a transcripts-topic event: {exc}")
                    continue
                self._dlq.ok()
                before = self._table.get(tp.partition, meeting_id) or new_state()
                state, updates = apply(meeting_id, before, event, pause_ms)
                if state is not before:
                    self._table.put(tp.partition, meeting_id, state)
                # Provenance: which input produced each output, and when it was appended (for lag metrics).
                headers = [
                    ("palaver.source", f"{record.topic}:{record.partition}:{record.offset}".encode()),
                    ("palaver.source_ts_ms", str(record.timestamp).encode()),
                ]
                outputs.extend((update, (tp.partition, headers)) for update in updates)
            if records:
                self._processed[tp] = records[-1].offset + 1
        sent = conflate(outputs)
        # Same key, same partition count, same partitioner: the input's partition is the output's.
        messages = [(partition, update.meeting_id.encode(), encode(update), headers) for update, (partition, headers) in sent]
        self._deliveries.extend(await send_batched(self._producer, self._output, messages))
        MERGER_DIALOGUE_UPDATES.inc(len(sent))

    def _begin_checkpoint(self, consumer: AIOKafkaConsumer) -> None:
        """Start a checkpoint of everything merged so far; merging goes on while it completes."""
        if self._checkpointing is None or self._checkpointing.done():
            snapshot = self._snapshot(consumer)
            previous = self._checkpointing
            self._checkpointing = asyncio.ensure_future(self._persist(consumer, snapshot, previous))
        self._last_checkpoint = time.monotonic()

    async def _checkpoint(self, consumer: AIOKafkaConsumer, only: set[TopicPartition] | None = None) -> None:
        """Checkpoint now and wait for it (revocation, shutdown)."""
        previous, self._checkpointing = self._checkpointing, None
        await self._persist(consumer, self._snapshot(consumer, only), previous)

    def _snapshot(self, consumer: AIOKafkaConsumer, only: set[TopicPartition] | None = None) -> _Snapshot:
        deliveries, self._deliveries = self._deliveries, []
        assigned = consumer.assignment()
        offsets = {tp: o for tp, o in self._processed.items() if tp in assigned and (only is None or tp in only)}
        for tp in offsets:
            del self._processed[tp]
        return _Snapshot(deliveries, self._table.take_dirty(), offsets)

    async def _persist(self, consumer: AIOKafkaConsumer, snapshot: _Snapshot, previous: asyncio.Future[None] | None) -> None:
        """Outputs delivered, then state written, then offsets committed (see the module docstring)."""
        if previous is not None:
            await previous  # checkpoints complete in order
        if snapshot.deliveries:
            await asyncio.gather(*snapshot.deliveries)  # a failed delivery raises: the service stops, input is re-read
        await self._table.write(self._producer, snapshot.states)
        if snapshot.offsets:
            try:
                await consumer.commit(snapshot.offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # The group moved on; the next owner resumes from the last commit and apply dedupes.
                log.warning("commit failed (rebalance): %s", exc)

    async def revoke(self, consumer: AIOKafkaConsumer, revoked: set[TopicPartition]) -> None:
        self._generation += 1
        async with self._lock:
            await self._checkpoint(consumer, only=revoked)
            self._table.forget({tp.partition for tp in revoked})
            for tp in revoked:
                self._processed.pop(tp, None)

    async def assign(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        self._generation += 1
        async with self._lock:
            await self._table.restore({tp.partition for tp in assigned})
        log.info("assigned %s", sorted(tp.partition for tp in assigned))
        if not self._ready:
            self._ready = True
            log.info(READY)


@dataclass
class _Snapshot:
    """What one checkpoint makes durable: outputs sent, states changed and offsets merged up to a point."""

    deliveries: list[asyncio.Future[Any]]
    states: dict[tuple[int, str], Any]
    offsets: dict[TopicPartition, int]


async def _rewind(consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
    """A batch fetched across a rebalance may lie past the state just restored: drop it and read the
    partitions this process still owns again from their committed offsets."""
    assigned = consumer.assignment()
    for tp in batches:
        if tp not in assigned:
            continue
        committed = await consumer.committed(tp)
        if committed is None:
            await consumer.seek_to_beginning(tp)
        else:
            consumer.seek(tp, committed)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, merger: Merger, consumer: AIOKafkaConsumer):
        self._merger = merger
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._merger.revoke(self._consumer, set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._merger.assign(self._consumer, set(assigned))

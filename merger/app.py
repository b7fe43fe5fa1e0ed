"""The merger service: a step of the consumer runner (``palaver.streams.runner``) around the pure
``merger.processor.apply``.

Each batch of transcript events is folded into per-meeting state; the batch's dialogue events are
conflated (``merger.processor.conflate``: only the newest revision of each box) and sent at once, without
waiting for the broker, so the next batch merges while they travel. The state lives in a changelog table
(``palaver.streams.changelog``) co-partitioned with the transcripts topic.

Checkpoints (every ``CHECKPOINT_S`` in the background while merging goes on, and awaited on revocation
and at shutdown; the runner orders them) make progress durable in one order: every output sent up to the
checkpoint is delivered, then the states changed up to it are written to the changelog, then (the
runner) the input offsets merged up to it are committed. So a committed offset never lies past an output or a state that could be
lost. After a crash the new owner restores the state of the last checkpoint (or a newer one) and re-reads
the input after the committed offset; ``apply`` recognises events the state has already seen, and the
events it merges again produce the same dialogue revisions (same ids, same content) as before: no loss,
no duplicates that the readers' upserts do not absorb.

Why not a faust agent: faust's per-message stream path (a task and futures per message) alone caps a
do-nothing agent at about 5,000-8,000 events/s on our 2-core machine (``palaver bench merger`` measures it
side by side), below the merger's target once merging is added; the runner does the same with batches.
A transcript event that decodes but makes ``apply`` raise is dead-lettered by the runner; the meeting's
other events go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from merger.processor import Update, apply, conflate, new_state
from palaver.events import decode_on, encode
from palaver.events.registry import DIALOGUES, MERGER_STATE, TRANSCRIPTS, topic_name
from palaver.metrics import MERGER_DIALOGUE_UPDATES
from palaver.settings import Settings
from palaver.streams.changelog import ChangelogTable
from palaver.streams.clients import make_consumer, make_producer, send_batched
from palaver.streams.runner import Checkpoint, Committed, ConsumerRunner, Offsets, RunnerConfig, Step

log = logging.getLogger(__name__)

GROUP = "merger"
BATCH_MAX = 500  # records per poll: conflation gains with size, the first record waits for the batch
POLL_MS = 20  # longest wait for input when idle
CHECKPOINT_S = 0.25  # how often outputs, state and offsets are made durable
READY = "merger ready"


class MergeStep(Step):
    """Folds transcript events into per-meeting state; each batch's dialogue events go out conflated."""

    def __init__(self, settings: Settings, producer: AIOKafkaProducer,
                 consumer_factory: Callable[..., AIOKafkaConsumer] = make_consumer):  # fmt: skip
        """``consumer_factory`` makes the consumer that restores the state (``make_consumer``'s arguments)."""
        self._settings = settings
        self._producer = producer
        self._output = topic_name(settings.topic_namespace, DIALOGUES.name)
        self._table = ChangelogTable(settings, MERGER_STATE, consumer_factory)
        self._outputs: list[tuple[Update, tuple[int, list[tuple[str, bytes]]]]] = []  # of this batch
        self._deliveries: list[asyncio.Future[object]] = []  # outputs sent since the last checkpoint
        self._ready = False

    def process(self, record: ConsumerRecord) -> None:
        event = decode_on(TRANSCRIPTS, record.value)
        meeting_id = event.meeting_id  # type: ignore[attr-defined]
        before = self._table.get(record.partition, meeting_id) or new_state()
        state, updates = apply(meeting_id, before, event, self._settings.merger_pause_ms)
        if state is not before:
            self._table.put(record.partition, meeting_id, state)
        # Provenance: which input produced each output, and when it was appended (for lag metrics).
        headers = [
            ("palaver.source", f"{record.topic}:{record.partition}:{record.offset}".encode()),
            ("palaver.source_ts_ms", str(record.timestamp).encode()),
        ]
        self._outputs.extend((update, (record.partition, headers)) for update in updates)

    async def after_batch(self) -> None:
        sent = conflate(self._outputs)
        self._outputs = []
        # Same key, same partition count, same partitioner: the input's partition is the output's.
        messages = [(partition, update.meeting_id.encode(), encode(update), headers) for update, (partition, headers) in sent]
        self._deliveries.extend(await send_batched(self._producer, self._output, messages))
        MERGER_DIALOGUE_UPDATES.inc(len(sent))

    async def snapshot(self, offsets: Offsets, final: bool) -> Checkpoint:
        deliveries, self._deliveries = self._deliveries, []
        states = self._table.take_dirty()

        async def persist() -> None:
            if deliveries:
                await asyncio.gather(*deliveries)  # a failed delivery raises: the service stops, input is re-read
            await self._table.write(self._producer, states)

        return Checkpoint(offsets, persist)

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        await self._table.restore({tp.partition for tp in committed})
        if not self._ready:
            self._ready = True
            log.info(READY)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        self._table.forget({tp.partition for tp in partitions})


RUNNER = RunnerConfig(service=GROUP, topics=(TRANSCRIPTS,), group=GROUP, batch_max=BATCH_MAX, poll_ms=POLL_MS,
                      checkpoint_interval_s=CHECKPOINT_S, consumer_config={"max_partition_fetch_bytes": 4 << 20})  # fmt: skip


async def run_merger(settings: Settings, stop: asyncio.Event) -> None:
    """Merge until ``stop`` is set."""
    producer = make_producer(settings, linger_ms=2)
    await producer.start()
    try:
        await ConsumerRunner(settings, RUNNER, MergeStep(settings, producer), producer).run(stop)
    finally:
        await producer.stop()

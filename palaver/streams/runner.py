"""The one consumer loop of Palaver's services.

A service supplies a ``Step``: what to do with one message (``process``), after each polled batch
(``after_batch``), and what a checkpoint makes durable (``snapshot``); it never touches the consumer. The
runner owns the rest, once for every service:

- **Rebalances.** A polled batch and a rebalance callback never interleave (one lock). On revocation the
  revoked partitions are checkpointed, then the step forgets them; on assignment the step loads what it
  needs. A batch fetched across a rebalance is dropped and its partitions are read again from their
  committed offsets (the state just restored may lie before it).
- **Two kinds of failure.** An exception raised by ``process`` means the *message* is bad: it goes to its
  topic's dead-letter queue with provenance headers, its offset counts as handled, and the service goes
  on (``DlqPolicy`` stops the service when too many messages fail, as after a bad deploy). An environment
  failure (``ENVIRONMENT_ERRORS``: the broker or the store unreachable) is never dead-lettered: it
  propagates, and the service stops loudly for its supervisor to restart. A step retries its own I/O with
  ``retrying`` first where a retry is safe (an insert with a dedup token).
- **Commit last.** A checkpoint takes the offsets handled so far and the step's ``snapshot`` of what was
  derived from them, makes the snapshot durable (``Checkpoint.persist``), then commits the offsets.
  Checkpoints complete in order, and processing goes on while one completes.
- **Backpressure.** While ``max_pending_checkpoints`` checkpoints are unfinished (a slow store), fetching
  pauses: the partitions are paused and polled, never slept on, so the consumer stays in its group.
- **Graceful shutdown.** When ``stop`` is set: no more fetching, a last checkpoint (bounded by
  ``shutdown_timeout_s``; what it did not commit is read again by the next owner), then the consumer closes.

A group-less runner (``group=None``, the live fan-out of one API process) follows its topics from their
end, commits nothing and dead-letters nothing: a message it cannot handle is counted and skipped (the
consumer groups of the same topic dead-letter it). Given offset ranges (``run(stop, ranges)``, a replay), a
group-less runner reads exactly those and returns: it checkpoints as a group's runner does (each
checkpoint's persist runs, in order, with backpressure), commits nothing, and its last checkpoint, awaited
without a time limit, takes everything.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from aiokafka.structs import ConsumerRecord

from palaver.events.registry import TopicSpec, topic_name
from palaver.metrics import CONSUMER_LAG, CONSUMER_SKIPPED_MESSAGES
from palaver.settings import Settings
from palaver.streams.clients import make_consumer
from palaver.streams.dlq import dlq_policy, dlq_topics

log = logging.getLogger(__name__)

# A failure of these is the environment's, never the message's: it is not dead-lettered.
ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (KafkaError, ConnectionError, TimeoutError, OSError)

Offsets = dict[TopicPartition, Any]  # an offset, or (offset, metadata)
Committed = tuple[int | None, str]  # a partition's committed offset (None: none yet) and its metadata


@dataclass
class Checkpoint:
    """What one checkpoint commits, and what must be durable first."""

    offsets: Offsets
    persist: Callable[[], Awaitable[None]] | None = None


class Step(abc.ABC):
    """A service's part of a consumer: plain processing, no consumer calls. The runner calls it under one
    lock: never two calls at once, never during a rebalance."""

    @abc.abstractmethod
    def process(self, record: ConsumerRecord) -> Awaitable[None] | None:
        """Handle one message (a plain method, or a coroutine function: ``async def``). Raising means the message is bad: it is
        dead-lettered and skipped, so the step must leave its state as it was when it raises (compute
        first, then change state). Raise only ``ENVIRONMENT_ERRORS`` for a failure of the environment."""

    async def after_batch(self) -> None:  # noqa: B027  # a hook; doing nothing is its default
        """After the messages of one poll, also an empty one (e.g. send the outputs they made, conflated).
        What it raises stops the service (an environment failure)."""

    async def snapshot(self, offsets: Offsets, final: bool) -> Checkpoint | None:
        """Take what was derived from the messages handled up to ``offsets`` (no message is handled
        meanwhile) and return the checkpoint that makes it durable, then commits (the default: ``offsets``,
        nothing to persist). None: no checkpoint now (the offsets wait for a later one); not when
        ``final`` (the last checkpoint of a revocation or a shutdown: take everything)."""
        return Checkpoint(offsets)

    def poll_ms(self, idle_ms: int) -> int:
        """How long the next poll may wait for input (``RunnerConfig.poll_ms`` unless the step has output
        waiting for a checkpoint that should start soon)."""
        return idle_ms

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:  # noqa: B027
        """Partitions this process now owns, with their committed offset and metadata (load their state)."""

    async def closing(self, partitions: set[TopicPartition] | None) -> None:  # noqa: B027
        """Before the last checkpoint of these partitions (revocation) or of all (shutdown: None): make no
        more output for them that this checkpoint would not take."""

    async def revoked(self, partitions: set[TopicPartition]) -> None:  # noqa: B027
        """Partitions this process no longer owns, after their last checkpoint (forget their state)."""


@dataclass(frozen=True)
class RunnerConfig:
    service: str  # in logs, DLQ provenance and metrics
    topics: Sequence[TopicSpec]
    group: str | None  # consumer group; None: a group-less reader from the topics' end
    batch_max: int = 500  # records per poll
    poll_ms: int = 100  # longest wait for input when idle
    checkpoint_interval_s: float = 0.0  # 0: a checkpoint after every batch
    max_pending_checkpoints: int = 2  # more unfinished checkpoints pause fetching
    shutdown_timeout_s: float = 15.0
    consumer_config: dict[str, Any] = field(default_factory=dict)


class ConsumerRunner:
    def __init__(self, settings: Settings, config: RunnerConfig, step: Step, producer: AIOKafkaProducer | None = None,
                 consumer_factory: Callable[..., AIOKafkaConsumer] = make_consumer):  # fmt: skip
        """``producer`` (started and stopped by the caller) dead-letters bad messages; a runner with a
        group needs one when its topics have dead-letter queues. ``consumer_factory`` takes
        ``make_consumer``'s arguments (tests pass an in-memory broker's)."""
        self._settings = settings
        self.config = config
        self._step = step
        self._process_awaits = inspect.iscoroutinefunction(step.process)
        self._consumer_factory = consumer_factory
        ns = settings.topic_namespace
        self._topics = [topic_name(ns, spec.name) for spec in config.topics]
        dlqs = dlq_topics(settings, *config.topics)
        if config.group is not None and dlqs and producer is None:
            raise ValueError(f"{config.service}: a consumer group with dead-letter queues needs a producer")
        self._dlq = dlq_policy(producer, settings, config.service, *config.topics) if config.group is not None and producer else None
        self._owned: set[TopicPartition] = set()  # partitions the step was told it owns
        self._handled: dict[TopicPartition, int] = {}  # next offset after the last record handled
        self._pending: list[asyncio.Future[None]] = []  # checkpoints not yet complete, oldest first
        self._last_checkpoint = time.monotonic()
        self._generation = 0  # bumped by each rebalance callback
        self._lock = asyncio.Lock()  # held by a batch, a checkpoint taken, and a rebalance callback
        self._failure: BaseException | None = None  # met in a rebalance callback, raised by the loop
        self._consumer: AIOKafkaConsumer | None = None
        self._ends: dict[TopicPartition, int] = {}  # reading ranges: each partition's end offset
        self._read_out: set[TopicPartition] = set()  # reading ranges: partitions read to their end

    async def run(self, stop: asyncio.Event, ranges: Mapping[TopicPartition, tuple[int, int]] | None = None) -> None:
        """Consume until ``stop`` is set (then shut down gracefully) or a failure stops the service.

        ``ranges`` (a group-less runner only): read each partition's offsets ``[start, end)`` and no other,
        then return once the last checkpoint is complete (or earlier, gracefully, when ``stop`` is set).
        Partitions are the topics' actual (namespaced) names."""
        c = self.config
        if ranges is not None and c.group is not None:
            raise ValueError(f"{c.service}: offset ranges are read without a consumer group")
        checkpoints = c.group is not None or ranges is not None
        overrides = {"max_poll_records": c.batch_max, **c.consumer_config}
        if c.group is None:
            overrides["auto_offset_reset"] = "latest"
        consumer = self._consumer = self._consumer_factory(self._settings, c.group, **overrides)
        await consumer.start()
        try:
            if ranges is not None:
                await self._read_ranges(consumer, ranges)
            elif c.group is None:
                await self._follow_from_end(consumer)
            else:
                consumer.subscribe(self._topics, listener=_Rebalance(self))
            log.info("%s consuming %s", c.service, ", ".join(self._topics))
            while not stop.is_set():
                self._raise_failures()
                if ranges is not None and self._ends.keys() <= self._read_out:
                    async with self._lock:
                        await self._final_checkpoint(consumer, None)  # everything read: no time limit
                    return
                self._apply_backpressure(consumer)
                generation = self._generation
                batches = await consumer.getmany(timeout_ms=self._step.poll_ms(c.poll_ms), max_records=c.batch_max)
                async with self._lock:
                    if generation != self._generation:
                        await self._rewind(consumer, batches)
                        continue
                    if ranges is not None:
                        batches = await self._within_ranges(consumer, batches)
                    await self._handle(consumer, batches)
                    if checkpoints and time.monotonic() - self._last_checkpoint >= c.checkpoint_interval_s:
                        await self._begin_checkpoint(consumer, final=False)
            if checkpoints:
                await self._shutdown(consumer)
        finally:
            # After a failure, checkpoints still in flight must not commit behind it (or after the
            # consumer closed): the next owner reads their input again.
            for future in self._pending:
                future.cancel()
            await asyncio.gather(*self._pending, return_exceptions=True)
            for tp in self._owned:
                _forget_lag(c.service, tp)
            await consumer.stop()

    async def _follow_from_end(self, consumer: AIOKafkaConsumer) -> None:
        tps = []
        for topic in self._topics:
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:  # metadata not fetched yet
                await consumer._client.force_metadata_update()
                partitions = consumer.partitions_for_topic(topic) or set()
            tps += [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)  # fixed now: what comes later is delivered
        self._owned = set(tps)
        await self._step.assigned(dict.fromkeys(tps, (None, "")))

    async def _read_ranges(self, consumer: AIOKafkaConsumer, ranges: Mapping[TopicPartition, tuple[int, int]]) -> None:
        """Assign the partitions of non-empty ``ranges`` at their starts."""
        self._ends = {tp: end for tp, (start, end) in ranges.items() if end > start}
        tps = sorted(self._ends, key=lambda tp: (tp.topic, tp.partition))
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, ranges[tp][0])
        self._owned = set(tps)
        await self._step.assigned(dict.fromkeys(tps, (None, "")))

    async def _within_ranges(self, consumer: AIOKafkaConsumer,
                             batches: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, list[ConsumerRecord]]:  # fmt: skip
        """``batches`` less the records at or past their partition's end; a partition read to its end is
        paused for good."""
        out = {}
        for tp, records in batches.items():
            end = self._ends[tp]
            kept = [r for r in records if r.offset < end] if records[-1].offset >= end else records
            if kept:
                out[tp] = kept
        for tp in self._ends.keys() - self._read_out:
            if await consumer.position(tp) >= self._ends[tp]:
                self._read_out.add(tp)
                consumer.pause(tp)
        return out

    async def _handle(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        process = self._step.process
        awaits = self._process_awaits
        ok = self._dlq.ok if self._dlq is not None else _nothing
        for tp, records in batches.items():
            if tp not in self._owned:
                # Fetched after the assignment, before its callback told the step: read it again later.
                consumer.seek(tp, records[0].offset)
                continue
            # The per-message path of every consumer (the merger's runs at tens of thousands a second).
            for record in records:
                try:
                    if awaits:
                        await process(record)  # type: ignore[misc]
                    else:
                        process(record)
                except ENVIRONMENT_ERRORS:
                    raise
                except Exception as exc:
                    await self._bad_message(record, exc)
                else:
                    ok()
            self._handled[tp] = records[-1].offset + 1
        await self._step.after_batch()
        # Every owned partition, also those idle in this batch (their highwater comes with every fetch).
        for tp in self._owned:
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag = max(0, highwater - await consumer.position(tp))
                CONSUMER_LAG.labels(service=self.config.service, topic=tp.topic, partition=str(tp.partition)).set(lag)

    async def _bad_message(self, record: ConsumerRecord, exc: Exception) -> None:
        if self._dlq is not None:
            await self._dlq.dead_letter(record, exc)
            return
        CONSUMER_SKIPPED_MESSAGES.labels(service=self.config.service, topic=record.topic).inc()
        log.warning("%s skipped %s[%s]@%s: %s: %s", self.config.service, record.topic, record.partition,
                    record.offset, type(exc).__name__, exc)  # fmt: skip

    async def _begin_checkpoint(self, consumer: AIOKafkaConsumer, final: bool,
                                only: set[TopicPartition] | None = None) -> asyncio.Future[None] | None:  # fmt: skip
        """Checkpoint everything handled so far (of ``only`` these partitions' offsets), unless the step
        declines (not ``final``); it completes in the background, after the checkpoints before it."""
        offsets = {tp: o for tp, o in self._handled.items() if tp in self._owned and (only is None or tp in only)}
        self._last_checkpoint = time.monotonic()
        checkpoint = await self._step.snapshot(offsets, final)
        if checkpoint is None:
            assert not final, "a final checkpoint must take everything"
            return None
        if not (final or checkpoint.offsets or checkpoint.persist):
            return None  # nothing to make durable: not a checkpoint that backpressure would count
        for tp in offsets:
            del self._handled[tp]
        previous = self._pending[-1] if self._pending else None
        future = asyncio.ensure_future(self._complete(consumer, checkpoint, previous))
        self._pending.append(future)
        return future

    async def _complete(self, consumer: AIOKafkaConsumer, checkpoint: Checkpoint,
                        previous: asyncio.Future[None] | None) -> None:  # fmt: skip
        if previous is not None:
            await asyncio.shield(previous)  # in order; its failure fails this one too
        if checkpoint.persist is not None:
            await checkpoint.persist()
        if checkpoint.offsets and self.config.group is not None:
            try:
                await consumer.commit(checkpoint.offsets)
            except (CommitFailedError, IllegalStateError) as exc:
                # The group moved on: the next owner resumes from the last commit, and ids dedupe the repeat.
                log.warning("%s: commit failed (rebalance): %s", self.config.service, exc)

    async def _final_checkpoint(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition] | None) -> None:
        """The last checkpoint of ``partitions`` (None: all, at shutdown), awaited with those before it."""
        await self._step.closing(partitions)
        future = await self._begin_checkpoint(consumer, final=True, only=partitions)
        assert future is not None
        await future
        self._raise_failures()

    def _raise_failures(self) -> None:
        while self._pending and self._pending[0].done():
            self._pending.pop(0).result()  # raises what a checkpoint met
        if self._failure is not None:
            raise self._failure

    def _apply_backpressure(self, consumer: AIOKafkaConsumer) -> None:
        behind = sum(not f.done() for f in self._pending) >= self.config.max_pending_checkpoints
        if behind:
            consumer.pause(*consumer.assignment())
        elif consumer.paused() - self._read_out:
            consumer.resume(*(consumer.paused() - self._read_out))

    async def _shutdown(self, consumer: AIOKafkaConsumer) -> None:
        async with self._lock:
            try:
                await asyncio.wait_for(self._final_checkpoint(consumer, None), self.config.shutdown_timeout_s)
            except TimeoutError:
                log.warning("%s: the last checkpoint took over %.0f s; the next owner reads its input again",
                            self.config.service, self.config.shutdown_timeout_s)  # fmt: skip

    async def _rewind(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
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

    async def revoke(self, revoked: set[TopicPartition]) -> None:
        self._generation += 1
        assert self._consumer is not None
        async with self._lock:
            mine = revoked & self._owned
            await self._final_checkpoint(self._consumer, mine)
            self._owned -= mine
            for tp in revoked:
                self._handled.pop(tp, None)
                _forget_lag(self.config.service, tp)  # another process reports it now
            await self._step.revoked(mine)

    async def assign(self, assigned: set[TopicPartition]) -> None:
        self._generation += 1
        assert self._consumer is not None
        async with self._lock:
            committed = await fetch_committed(self._consumer, assigned)
            await self._step.assigned({tp: committed.get(tp, (None, "")) for tp in assigned})
            self._owned |= assigned
        for topic in sorted({tp.topic for tp in assigned}):
            partitions = sorted(tp.partition for tp in assigned if tp.topic == topic)
            log.info("%s assigned %s of %s", self.config.service, partitions, topic)


async def fetch_committed(consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> dict[TopicPartition, Committed]:
    """Committed offset (None: none yet) and metadata per partition. aiokafka's public ``committed()``
    returns the offset only; the metadata comes from the group coordinator's fetch."""
    if not partitions:
        return {}
    found = await consumer._coordinator.fetch_committed_offsets(list(partitions))
    return {tp: (om.offset if om.offset >= 0 else None, om.metadata or "") for tp, om in found.items()}


def _nothing() -> None:
    pass


def _forget_lag(service: str, tp: TopicPartition) -> None:
    with contextlib.suppress(KeyError):
        CONSUMER_LAG.remove(service, tp.topic, str(tp.partition))


class _Rebalance(ConsumerRebalanceListener):
    """aiokafka logs and swallows a listener's exception: keep it for the loop to raise."""

    def __init__(self, runner: ConsumerRunner):
        self._runner = runner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._guard(self._runner.revoke(set(revoked)))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._guard(self._runner.assign(set(assigned)))

    async def _guard(self, call: Awaitable[None]) -> None:
        try:
            await call
        except Exception as exc:
            self._runner._failure = exc
            raise


T = TypeVar("T")


async def retrying(call: Callable[[], Awaitable[T]], what: str, budget_s: float, first_delay_s: float = 0.5,
                   max_delay_s: float = 10.0, retry_on: tuple[type[BaseException], ...] = ENVIRONMENT_ERRORS) -> T:  # fmt: skip
    """Await ``call()`` until it succeeds, retrying ``retry_on`` failures with exponential backoff for at
    most ``budget_s``; then raise the last failure (the environment stays bad: fail loudly). Only for calls
    that are safe to repeat (idempotent)."""
    deadline = time.monotonic() + budget_s
    delay = first_delay_s
    attempt = 1
    while True:
        try:
            return await call()
        except retry_on as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (attempt %d, %s: %s); retrying in %.1f s", what, attempt, type(exc).__name__,
                        exc, delay)  # fmt: skip
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay_s)
            attempt += 1

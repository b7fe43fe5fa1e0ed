"""The consumer runner (palaver/streams/runner.py) with a tiny step over the in-memory broker: dead-letters,
environment failures, commit order, backpressure, shutdown, rebalances and the group-less reader."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import REGISTRY

from palaver.events.registry import TopicSpec
from palaver.settings import Settings
from palaver.streams.dlq import DlqLimitExceeded
from palaver.streams.memory_broker import MemoryBroker, MemoryConsumer
from palaver.streams.runner import Checkpoint, Committed, ConsumerRunner, Offsets, RunnerConfig, Step
from tests.runner_harness import Running, running, start, until

TOPIC = TopicSpec(name="t", key="k", partitions=1, retention_ms=-1, cleanup_policy="delete", events=(),
                  producers=(), consumers=(), dlq="t.dlq")  # fmt: skip
TP = TopicPartition("t", 0)
CONFIG = RunnerConfig(service="tiny", topics=(TOPIC,), group="tiny", poll_ms=5)


class TinyStep(Step):
    """Keeps what it handled. A value starting with ``bad`` is a bad message, ``down`` an unreachable
    environment. Checkpoints persist behind ``gate`` when one is set (``hold``); ``journal`` lists the
    step's calls and persists in order."""

    def __init__(self, broker: MemoryBroker) -> None:
        self.broker = broker
        self.seen: list[bytes] = []
        self.owned: set[TopicPartition] = set()  # as the step was told
        self.unowned: list[bytes] = []  # handled before the step was told it owns their partition
        self.polls = 0
        self.gate: asyncio.Event | None = None
        self.gates: list[asyncio.Event] = []
        self.decline = False  # snapshot says "not now" unless final
        self.metadata = ""  # committed with every offset
        self.journal: list[tuple[Any, ...]] = []

    def process(self, record: ConsumerRecord) -> None:
        if record.value.startswith(b"bad"):
            raise ValueError(f"cannot handle {record.value!r}")
        if record.value.startswith(b"down"):
            raise ConnectionError("the store is unreachable")
        if TopicPartition(record.topic, record.partition) not in self.owned:
            self.unowned.append(record.value)
        self.seen.append(record.value)

    async def after_batch(self) -> None:
        self.polls += 1

    async def snapshot(self, offsets: Offsets, final: bool) -> Checkpoint | None:
        if offsets:
            self.journal.append(("snapshot", dict(offsets), final))
        if self.decline and not final:
            return None
        if not offsets:
            return Checkpoint(offsets)
        gate, history = self.gate, self.broker.history

        async def persist() -> None:
            if gate is not None:
                await gate.wait()
            history.append(("persisted", dict(offsets)))

        return Checkpoint(
            {tp: (o, f"{self.metadata}{o}") if self.metadata else o for tp, o in offsets.items()}, persist
        )

    def hold(self) -> asyncio.Event:
        """Checkpoints taken from now on persist only once the returned event is set."""
        self.gate = asyncio.Event()
        self.gates.append(self.gate)
        return self.gate

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        self.journal.append(("assigned", dict(committed)))
        self.owned |= set(committed)

    async def closing(self, partitions: set[TopicPartition] | None) -> None:
        self.journal.append(("closing", partitions))
        if partitions is None:
            for gate in self.gates:
                gate.set()  # a test that failed while holding checkpoints still shuts down

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        self.journal.append(("revoked", partitions))
        self.owned -= partitions

    def calls(self, name: str) -> list[tuple[Any, ...]]:
        return [entry for entry in self.journal if entry[0] == name]


def _append(broker: MemoryBroker, *values: bytes, topic: str = "t", partition: int = 0) -> None:
    for value in values:
        broker.append(topic, value, key=b"k", headers=[("origin", b"test")], partition=partition)


def _committed(run: Running, partition: int = 0) -> int | None:
    return run.committed("tiny", "t", partition)


async def _polls(step: TinyStep, run: Running, n: int = 5) -> None:
    """Let the runner poll ``n`` more times (what it would do by itself, it has done by then)."""
    seen = step.polls
    await until(lambda: step.polls >= seen + n, f"{n} more polls", run.task)


def _skipped() -> float:
    labels = {"service": "tiny", "topic": "t"}
    return REGISTRY.get_sample_value("palaver_consumer_skipped_messages_total", labels) or 0.0


def _commits(broker: MemoryBroker) -> list[tuple[Any, ...]]:
    return [entry for entry in broker.history if entry[0] == "commit"]


async def test_a_bad_message_is_dead_lettered_with_provenance_and_committed_past() -> None:
    broker = MemoryBroker(partitions=1)
    step = TinyStep(broker)
    async with running(broker, Settings(), CONFIG, step) as run:
        _append(broker, b"a", b"bad-1", b"c")
        await until(lambda: _committed(run) == 3, "all three committed", run.task)

    assert step.seen == [b"a", b"c"]
    [letter] = broker.records("t.dlq")
    assert (letter.key, letter.value) == (b"k", b"bad-1")
    headers = dict(letter.headers)
    assert headers["origin"] == b"test", "the record's own headers are kept"
    assert (headers["dlq.topic"], headers["dlq.partition"], headers["dlq.offset"]) == (b"t", b"0", b"1")
    assert headers["dlq.error.class"] == b"ValueError"
    assert b"cannot handle" in headers["dlq.error.message"]
    assert headers["dlq.service"] == b"tiny"


async def test_an_environment_failure_stops_the_runner_and_commits_nothing_past_it() -> None:
    broker = MemoryBroker(partitions=1)
    step = TinyStep(broker)
    run = start(broker, Settings(), dataclasses.replace(CONFIG, batch_max=1), step)
    _append(broker, b"a")
    await until(lambda: _committed(run) == 1, "a committed", run.task)
    _append(broker, b"down", b"c")
    with pytest.raises(ConnectionError, match="unreachable"):
        await asyncio.wait_for(run.task, 5)

    assert step.seen == [b"a"]
    assert _committed(run) == 1
    assert broker.records("t.dlq") == [], "a bad environment is never dead-lettered"


async def test_persist_runs_before_its_commit_and_commits_keep_their_order() -> None:
    broker = MemoryBroker(partitions=1)
    step = TinyStep(broker)
    async with running(
        broker, Settings(), dataclasses.replace(CONFIG, max_pending_checkpoints=10), step
    ) as run:
        first = step.hold()
        _append(broker, b"a")
        await until(lambda: step.calls("snapshot"), "the first checkpoint is taken", run.task)
        second = step.hold()
        _append(broker, b"b")
        await until(lambda: len(step.calls("snapshot")) == 2, "the second checkpoint is taken", run.task)
        second.set()  # the later persist may finish first ...
        await _polls(step, run)
        assert _commits(broker) == [], "... but nothing commits before the first checkpoint completes"
        first.set()
        await until(lambda: _committed(run) == 2, "both committed", run.task)

    order = [entry for entry in broker.history if entry[0] in ("persisted", "commit")]
    assert order == [("persisted", {TP: 1}), ("commit", "tiny", "t", 0, 1),
                     ("persisted", {TP: 2}), ("commit", "tiny", "t", 0, 2)]  # fmt: skip


async def test_unfinished_checkpoints_pause_fetching_until_they_complete() -> None:
    broker = MemoryBroker(partitions=1)
    step = TinyStep(broker)
    async with running(
        broker, Settings(), dataclasses.replace(CONFIG, max_pending_checkpoints=2), step
    ) as run:
        first = step.hold()
        _append(broker, b"a")
        await until(lambda: len(step.calls("snapshot")) == 1, "a's checkpoint is taken", run.task)
        second = step.hold()
        await _polls(step, run)
        _append(broker, b"b")
        await until(
            lambda: step.seen == [b"a", b"b"], "b handled: one unfinished checkpoint of two allowed", run.task
        )
        await until(lambda: len(step.calls("snapshot")) == 2, "b's checkpoint is taken", run.task)
        step.gate = None
        await _polls(step, run)
        _append(broker, b"c")
        await _polls(step, run)
        assert step.seen == [b"a", b"b"], "no record is handled while two checkpoints are unfinished"
        assert run.consumer.paused() == {TP}
        first.set()
        second.set()
        await until(
            lambda: step.seen == [b"a", b"b", b"c"], "c handled once the checkpoints completed", run.task
        )
        await until(lambda: _committed(run) == 3, "c committed", run.task)
        assert run.consumer.paused() == set()


async def test_a_runner_allowed_one_unfinished_checkpoint_goes_on_once_it_completes() -> None:
    broker = MemoryBroker(partitions=1)
    step = TinyStep(broker)
    async with running(
        broker, Settings(), dataclasses.replace(CONFIG, max_pending_checkpoints=1), step
    ) as run:
        await _polls(step, run)
        _append(broker, b"a")
        await until(lambda: _committed(run) == 1, "a handled and committed", run.task)
        await _polls(step, run)
        _append(broker, b"b")
        await until(lambda: _committed(run) == 2, "b handled and committed", run.task)
    assert step.seen == [b"a", b"b"]


async def test_graceful_shutdown_takes_a_last_checkpoint_and_commits() -> None:
    broker = MemoryBroker(partitions=1)
    step = TinyStep(broker)
    run = start(broker, Settings(), dataclasses.replace(CONFIG, checkpoint_interval_s=3600), step)
    _append(broker, b"a", b"b")
    await until(lambda: step.seen == [b"a", b"b"], "both handled", run.task)
    await _polls(step, run)
    assert _commits(broker) == [], "no checkpoint before the interval"
    await run.finish()

    assert step.journal[-2:] == [("closing", None), ("snapshot", {TP: 2}, True)]
    assert _committed(run) == 2
    assert broker.history[-2:] == [("persisted", {TP: 2}), ("commit", "tiny", "t", 0, 2)]


async def test_a_declined_snapshot_keeps_its_offsets_for_a_later_checkpoint() -> None:
    broker = MemoryBroker(partitions=1)
    step = TinyStep(broker)
    step.decline = True
    async with running(broker, Settings(), CONFIG, step) as run:
        _append(broker, b"a")
        await until(lambda: step.seen == [b"a"], "a handled", run.task)
        _append(broker, b"b")
        await until(lambda: step.seen == [b"a", b"b"], "b handled", run.task)
        await _polls(step, run)
        assert _commits(broker) == []
        assert step.calls("snapshot")[-1] == ("snapshot", {TP: 2}, False), (
            "the declined offsets are offered again"
        )
        step.decline = False
        await until(lambda: _committed(run) == 2, "the next checkpoint commits them", run.task)


async def test_records_fetched_before_the_assignment_callback_are_read_again() -> None:
    broker = MemoryBroker(partitions=1)
    _append(broker, b"a", b"b", b"c")
    step = TinyStep(broker)

    def late(consumer: MemoryConsumer) -> None:
        consumer.announce_assignments_late = True

    async with running(broker, Settings(), CONFIG, step, prepare=late) as run:
        await until(lambda: _committed(run) == 3, "all committed", run.task)

    assert step.seen == [b"a", b"b", b"c"], "each record handled once, in order"
    assert step.unowned == [], "a record handled before the step was told it owns the partition"
    assert step.journal[0] == ("assigned", {TP: (None, "")})


async def test_a_rebalance_checkpoints_the_revoked_partitions_and_hands_over_the_committed_offsets() -> None:
    broker = MemoryBroker(partitions=2)
    step = TinyStep(broker)
    step.metadata = "state@"
    p0, p1 = TP, TopicPartition("t", 1)
    config = dataclasses.replace(CONFIG, checkpoint_interval_s=3600)
    async with running(broker, Settings(), config, step) as run:
        _append(broker, b"a", b"b", partition=0)
        _append(broker, b"c", partition=1)
        await until(lambda: len(step.seen) == 3, "all handled", run.task)
        await run.consumer.rebalance()
        await until(lambda: len(step.calls("assigned")) == 2, "assigned again", run.task)
        _append(broker, b"d", partition=1)
        await until(lambda: len(step.seen) == 4, "d handled after the rebalance", run.task)

    assert step.journal[:5] == [
        ("assigned", {p0: (None, ""), p1: (None, "")}),
        ("closing", {p0, p1}),
        ("snapshot", {p0: 2, p1: 1}, True),
        ("revoked", {p0, p1}),
        ("assigned", {p0: (2, "state@2"), p1: (1, "state@1")}),
    ]
    assert sorted(step.seen) == [b"a", b"b", b"c", b"d"], "nothing handled twice"
    assert (_committed(run, 0), _committed(run, 1)) == (2, 2)


async def test_the_dlq_limit_stops_the_runner_before_the_message_that_crosses_it() -> None:
    broker = MemoryBroker(partitions=1)
    step = TinyStep(broker)
    run = start(broker, Settings(dlq_max_consecutive=2), dataclasses.replace(CONFIG, batch_max=1), step)
    _append(broker, b"a", b"bad-1", b"bad-2", b"bad-3", b"e")
    with pytest.raises(DlqLimitExceeded, match="3 bad messages in a row"):
        await asyncio.wait_for(run.task, 5)
    for _ in range(5):
        await asyncio.sleep(0)  # checkpoints begun before the failure may still complete

    assert [r.value for r in broker.records("t.dlq")] == [b"bad-1", b"bad-2"]
    assert step.seen == [b"a"]
    assert (_committed(run) or 0) <= 3, (
        "bad-3 (offset 3) is not committed past: it is read again after the fix"
    )


async def test_a_groupless_runner_follows_from_the_end_skips_bad_messages_and_never_commits() -> None:
    broker = MemoryBroker(partitions=1)
    _append(broker, b"before")
    step = TinyStep(broker)
    skipped_before = _skipped()
    async with running(broker, Settings(), dataclasses.replace(CONFIG, group=None), step) as run:
        await until(lambda: bool(step.calls("assigned")), "positioned at the end", run.task)
        _append(broker, b"a", b"bad-1", b"c")
        await until(lambda: step.seen == [b"a", b"c"], "a and c handled", run.task)

    assert step.calls("assigned") == [("assigned", {TP: (None, "")})]
    assert _skipped() == skipped_before + 1
    assert run.consumer.commits == [] and broker.committed == {}
    assert broker.records("t.dlq") == []
    assert step.calls("snapshot") == [], "no checkpoint without a group"


def _read_ranges(broker: MemoryBroker, step: Step, ranges: dict[TopicPartition, tuple[int, int]],
                 **config: Any) -> asyncio.Task[None]:  # fmt: skip
    runner = ConsumerRunner(Settings(), dataclasses.replace(CONFIG, group=None, **config), step,
                            consumer_factory=broker.consumer)  # type: ignore[arg-type]  # fmt: skip
    return asyncio.create_task(runner.run(asyncio.Event(), ranges))


async def test_a_groupless_runner_reads_its_ranges_checkpoints_them_and_returns() -> None:
    broker = MemoryBroker(partitions=2)
    _append(broker, b"p0-0", b"p0-1", b"p0-2", b"p0-3", b"p0-4", partition=0)
    _append(broker, b"p1-0", b"p1-1", b"p1-2", partition=1)
    p1 = TopicPartition("t", 1)
    step = TinyStep(broker)
    await asyncio.wait_for(_read_ranges(broker, step, {TP: (1, 3), p1: (0, 2)}, batch_max=1), 5)

    assert sorted(step.seen) == [b"p0-1", b"p0-2", b"p1-0", b"p1-1"], "exactly the ranges, each record once"
    assert step.calls("assigned") == [("assigned", {TP: (None, ""), p1: (None, "")})]
    persisted = [entry[1] for entry in broker.history if entry[0] == "persisted"]
    assert persisted and {tp: o for p in persisted for tp, o in p.items()} == {TP: 3, p1: 2}, "all persisted"
    assert step.calls("closing") == [("closing", None)], "a last checkpoint took everything"
    assert _commits(broker) == [] and broker.committed == {}, "nothing committed without a group"


class _HeldStep(TinyStep):
    async def closing(self, partitions: set[TopicPartition] | None) -> None:
        self.journal.append(("closing", partitions))  # the gates stay shut


async def test_reading_ranges_returns_only_once_its_last_checkpoint_is_persisted() -> None:
    broker = MemoryBroker(partitions=1)
    _append(broker, b"a", b"b", b"c")
    step = _HeldStep(broker)
    gate = step.hold()
    task = _read_ranges(broker, step, {TP: (0, 3)}, max_pending_checkpoints=1)
    await until(lambda: bool(step.calls("closing")), "the last checkpoint taken", task)
    await asyncio.sleep(0.05)
    assert not task.done(), "its checkpoints still persist"
    gate.set()
    await asyncio.wait_for(task, 5)
    assert step.seen == [b"a", b"b", b"c"]
    assert [entry for entry in broker.history if entry[0] == "persisted"][-1] == ("persisted", {TP: 3})


async def test_empty_ranges_return_at_once_and_ranges_need_a_groupless_runner() -> None:
    broker = MemoryBroker(partitions=1)
    _append(broker, b"a")
    step = TinyStep(broker)
    await asyncio.wait_for(_read_ranges(broker, step, {TP: (1, 1)}), 5)
    assert step.seen == []
    runner = ConsumerRunner(Settings(), CONFIG, step, broker.producer(), consumer_factory=broker.consumer)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="without a consumer group"):
        await runner.run(asyncio.Event(), {TP: (0, 1)})

"""The shared timelines (ingest/timeline_log.py) over the in-memory broker: two ingest processes that
place the first streams of a meeting at the same moment answer from the record the partition took first,
fold the same timelines, and leave the whole fold as the meeting's last record (what compaction keeps);
a restarted process folds them back."""

from __future__ import annotations

import asyncio

import orjson

from ingest.clock import Timeline, place, propose
from ingest.timeline_log import TimelineLog
from palaver.settings import Settings
from palaver.streams.memory_broker import MemoryBroker, MemoryProducer

RATE = 16000


def _process(broker: MemoryBroker) -> TimelineLog:
    return TimelineLog(Settings(), MemoryProducer(broker), broker.consumer)  # type: ignore[arg-type]


async def _settled(*logs: TimelineLog) -> None:
    """Until every log folded every record (the follower runs in the background)."""
    for _ in range(200):
        await asyncio.sleep(0.01)
        if all(log.timelines == logs[0].timelines for log in logs) and logs[0].timelines:
            return
    raise AssertionError("the processes never agreed")


def _last_records(broker: MemoryBroker, topic: str) -> dict[str, Timeline | None]:
    last: dict[str, Timeline | None] = {}
    for record in broker.records(topic):
        last[record.key.decode()] = None if record.value is None else Timeline.from_json(orjson.loads(record.value))
    return last


async def test_two_processes_placing_at_once_agree_on_the_first_record() -> None:
    broker = MemoryBroker()
    one, two = _process(broker), _process(broker)
    await one.start()
    await two.start()
    try:
        # Both propose before either has read anything of the meeting.
        alice = propose(None, "m1/alice", 10_000, 0, RATE)
        bob = propose(None, "m1/bob", 10_040, 0, RATE)
        (a_before, a_after, a_at), (b_before, b_after, b_at) = await one.write("m1", alice), await two.write("m1", bob)
        assert a_at != b_at, "each record has its own place: a connection's id"
        assert a_after is not None and b_after is not None
        placed_alice = place(a_before, a_after, "m1/alice", 10_000, 0, RATE)
        placed_bob = place(b_before, b_after, "m1/bob", 10_040, 0, RATE)
        assert (placed_alice.epoch_ms, placed_alice.stream_start_ms) == (10_000, 0)
        assert (placed_bob.epoch_ms, placed_bob.stream_start_ms, placed_bob.first_sample) == (10_000, 40, 0)
        await _settled(one, two)
        assert one.timelines["m1"] == b_after
        # bob's record missed alice: its writer restates the fold, so compaction keeps all of it.
        for _ in range(200):
            if _last_records(broker, one.topic)["m1"] == b_after:
                break
            await asyncio.sleep(0.01)
        assert _last_records(broker, one.topic)["m1"] == b_after

        restarted = _process(broker)
        await restarted.start()
        try:
            await _settled(one, restarted)
            # The restarted process places a resumed stream where the first placed it.
            before, after, _ = await restarted.write("m1", propose(restarted.timelines["m1"], "m1/bob", 90_000, 32_000, RATE))
            assert after is not None
            resumed = place(before, after, "m1/bob", 90_000, 32_000, RATE)
            assert (resumed.epoch_ms, resumed.stream_start_ms, resumed.first_sample) == (10_000, 40, 32_000)
        finally:
            await restarted.stop()
    finally:
        await one.stop()
        await two.stop()


async def test_a_tombstone_drops_the_meeting_everywhere() -> None:
    broker = MemoryBroker()
    one, two = _process(broker), _process(broker)
    try:
        await one.write("m1", propose(None, "m1/alice", 10_000, 0, RATE))
        await two.write("m2", propose(None, "m2/alice", 10_000, 0, RATE))
        await _settled(one, two)
        assert set(one.timelines) == {"m1", "m2"}
        await two.write("m1", None)
        for _ in range(200):
            if set(one.timelines) == {"m2"}:
                break
            await asyncio.sleep(0.01)
        assert set(one.timelines) == set(two.timelines) == {"m2"}
    finally:
        await one.stop()
        await two.stop()

"""The ingest's per-frame path: headers encoded once per connection (ingest/frames.py), frames batched per
partition (ingest/batcher.py) and acknowledged in stream order once their batch is durable (ingest/acks.py)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaTimeoutError

from ingest.acks import Acker
from ingest.batcher import FrameBatcher
from ingest.frames import FrameHeaders
from palaver.events import AudioFrameV1
from palaver.streams.memory_broker import MemoryBroker, MemoryProducer

TOPIC = "audio.frames"


@pytest.mark.parametrize("language", [None, "de"])
def test_frame_headers_are_the_events_own_for_every_first_sample(language: str | None) -> None:
    def frame(first_sample: int) -> AudioFrameV1:
        return AudioFrameV1("m1", "usr_a", "m1/usr_a", 16000, first_sample, 1234, b"\0\0", language=language)

    headers = FrameHeaders(frame(0))
    for first_sample in (0, 1600, 3200, 16000 * 3600):
        assert headers.at(first_sample) == frame(first_sample).kafka_headers()


class _CountingProducer(MemoryProducer):
    def __init__(self, broker: MemoryBroker):
        super().__init__(broker)
        self.batches: list[tuple[int, int]] = []  # (partition, records)

    async def send_batch(self, batch, topic, partition):  # type: ignore[no-untyped-def]
        self.batches.append((partition, len(batch.messages)))
        return await super().send_batch(batch, topic, partition)


async def test_frames_added_within_one_linger_go_as_one_batch_per_partition_in_order() -> None:
    broker = MemoryBroker(partitions=2)
    producer = _CountingProducer(broker)
    batcher = FrameBatcher(producer, TOPIC, linger_s=0.01)
    deliveries = [batcher.add(n % 2, f"s{n % 2}".encode(), bytes([n]) * 4, [("n", str(n).encode())]) for n in range(6)]
    assert deliveries[0] is deliveries[2] is deliveries[4], "one partition's frames share their batch's delivery"
    await asyncio.wait_for(asyncio.gather(*deliveries), 5)

    assert sorted(producer.batches) == [(0, 3), (1, 3)]
    for partition in (0, 1):
        values = [r.value for r in broker.logs[TOPIC][partition]]
        assert values == [bytes([n]) * 4 for n in range(partition, 6, 2)], "a partition keeps the frames' order"
    later = batcher.add(0, b"s0", b"late", [])
    await asyncio.wait_for(later, 5)
    assert producer.batches[-1] == (0, 1), "a frame after the flush goes in the next batch"


async def test_a_batch_the_broker_refuses_fails_the_delivery_of_each_of_its_frames() -> None:
    producer = MemoryProducer(MemoryBroker(partitions=1))
    producer.fail_next(10)
    batcher = FrameBatcher(producer, TOPIC, linger_s=0.001)
    deliveries = [batcher.add(0, b"s", b"pcm!", []) for _ in range(3)]
    for delivery in deliveries:
        with pytest.raises(KafkaTimeoutError):
            await asyncio.wait_for(delivery, 5)


async def test_acks_follow_the_stream_order_whatever_order_batches_complete_in() -> None:
    sent: list[str] = []

    async def send_text(text: str) -> None:
        sent.append(text)

    loop = asyncio.get_running_loop()
    acker = Acker(send_text, interval_s=0.0)
    first, second = loop.create_future(), loop.create_future()
    acker.track(first, 320)
    acker.track(second, 640)
    acker.track(second, 960)  # a second frame in the same batch
    second.set_result(None)
    await asyncio.sleep(0.01)
    assert sent == [] and acker.durable_samples == 0, "nothing is acknowledged past a frame still in flight"
    first.set_result(None)
    assert await asyncio.wait_for(acker.drain(), 5) == 960
    assert sent[-1] == '{"type":"ack","samples":960}'
    await acker.close()


async def test_a_failed_delivery_stops_the_acks_and_drain_raises_it() -> None:
    sent: list[str] = []

    async def send_text(text: str) -> None:
        sent.append(text)

    loop = asyncio.get_running_loop()
    acker = Acker(send_text)
    ok, failed, after = loop.create_future(), loop.create_future(), loop.create_future()
    for delivery, samples in ((ok, 320), (failed, 640), (after, 960)):
        acker.track(delivery, samples)
    ok.set_result(None)
    failed.set_exception(KafkaTimeoutError("broker gone"))
    after.set_result(None)
    with pytest.raises(KafkaTimeoutError):
        await asyncio.wait_for(acker.drain(), 5)
    assert all('"samples":960' not in text and '"samples":640' not in text for text in sent)
    await acker.close()


class _OneFrameBatch:
    """A record batch with room for one frame."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes | None, bytes, tuple[tuple[str, bytes], ...]]] = []

    def append(self, key, value, timestamp, headers):  # type: ignore[no-untyped-def]
        if self.messages:
            return None
        self.messages.append((key, value, tuple(headers)))
        return object()


class _StalledProducer(MemoryProducer):
    """A broker that takes nothing until ``go`` is set."""

    def __init__(self, broker: MemoryBroker):
        super().__init__(broker)
        self.go = asyncio.Event()

    def create_batch(self):  # type: ignore[no-untyped-def]
        return _OneFrameBatch()

    async def send_batch(self, batch, topic, partition):  # type: ignore[no-untyped-def]
        await self.go.wait()
        return await super().send_batch(batch, topic, partition)


async def test_while_the_producer_is_stalled_full_batches_pile_up_only_to_the_limit_then_the_sockets_wait() -> None:
    broker = MemoryBroker(partitions=1)
    producer = _StalledProducer(broker)
    batcher = FrameBatcher(producer, TOPIC, linger_s=0.001, max_waiting=2)
    first = batcher.add(0, b"s", b"a", [])
    await asyncio.sleep(0.05)  # the flusher took the first batch and waits on the producer
    for value in (b"b", b"c", b"d"):
        assert not batcher.backlogged
        batcher.add(0, b"s", value, [])
    assert batcher.backlogged, "two full batches wait: the limit"
    room = asyncio.create_task(batcher.room())
    await asyncio.sleep(0.05)
    assert not room.done(), "no room while the producer takes nothing"
    producer.go.set()
    await asyncio.wait_for(room, 5)
    await asyncio.wait_for(first, 5)
    assert not batcher.backlogged


async def test_a_client_gone_while_acks_are_sent_leaves_the_durable_count_to_drain() -> None:
    from starlette.websockets import WebSocketDisconnect

    async def gone(text: str) -> None:
        raise WebSocketDisconnect(1006)

    loop = asyncio.get_running_loop()
    acker = Acker(gone)
    first, second = loop.create_future(), loop.create_future()
    acker.track(first, 320)
    acker.track(second, 640)
    first.set_result(None)
    await asyncio.sleep(0.01)
    second.set_result(None)
    assert await asyncio.wait_for(acker.drain(), 5) == 640
    await acker.close()

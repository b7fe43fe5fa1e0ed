"""The live hub (api/live.py) on the real group-less consumer runner over the in-memory broker: each meeting's
subscribers get its dialogue updates only, a subscriber too slow to keep up gets None (its socket closes),
and a message the hub cannot decode is skipped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import api.live
import palaver.events
from api.live import LiveHub
from palaver.events import DialogueUpdateV1, MeetingWatermarkV1, decode, encode
from palaver.settings import Settings
from palaver.streams.memory_broker import MemoryBroker
from tests.runner_harness import until

EXAMPLES = Path(palaver.events.__file__).parent / "examples" / "dialogues"
UPDATE = DialogueUpdateV1.model_validate_json(
    (EXAMPLES / "dialogue.update-v1" / "live-alice.json").read_bytes()
)
WATERMARK = MeetingWatermarkV1.model_validate_json(
    (EXAMPLES / "meeting.watermark-v1" / "alice-stopped.json").read_bytes()
)


def _update(meeting: str, text: str) -> DialogueUpdateV1:
    return UPDATE.model_copy(update={"meeting_id": meeting, "text": text})


def _publish(broker: MemoryBroker, *events: DialogueUpdateV1 | MeetingWatermarkV1) -> None:
    for event in events:
        broker.append("dialogues", encode(event), key=event.meeting_id.encode())


@asynccontextmanager
async def _hub(broker: MemoryBroker) -> AsyncIterator[LiveHub]:
    broker.create("dialogues")  # as ``palaver up`` does before any service starts
    hub = LiveHub(Settings(), consumer_factory=broker.consumer)
    stop = asyncio.Event()
    task = asyncio.create_task(hub.run(stop))
    await until(hub.ready.is_set, "the hub follows the topic's end", task)
    try:
        yield hub
    finally:
        stop.set()
        broker.wake()
        await asyncio.wait_for(task, 5)


def _holds(items: list[DialogueUpdateV1 | None], count: int) -> Callable[[], bool]:
    return lambda: len(items) == count


def _drain(queue: asyncio.Queue[DialogueUpdateV1 | None]) -> list[DialogueUpdateV1 | None]:
    items = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


async def test_subscribers_get_their_meetings_dialogue_updates_only() -> None:
    broker = MemoryBroker(partitions=1)
    _publish(broker, _update("m1", "before the hub started"))
    async with _hub(broker) as hub:
        first, second = hub.subscribe("m1"), hub.subscribe("m2")
        _publish(broker, _update("m1", "a"), _update("m2", "b"), WATERMARK.model_copy(update={"meeting_id": "m1"}),
                 _update("m1", "c"), _update("m2", "d"))  # fmt: skip
        await until(lambda: second.qsize() == 2, "m2's updates delivered")  # d comes last: all are handled

        assert [e.text for e in _drain(first)] == ["a", "c"]  # type: ignore[union-attr]
        assert [e.text for e in _drain(second)] == ["b", "d"]  # type: ignore[union-attr]
        hub.unsubscribe("m1", first)
        _publish(broker, _update("m1", "e"), _update("m2", "f"))
        await until(lambda: second.qsize() == 1, "f delivered")
        assert first.empty(), "an unsubscribed queue gets nothing"


async def test_a_subscriber_too_slow_gets_none_and_the_others_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api.live, "QUEUE_LIMIT", 2)
    broker = MemoryBroker(partitions=1)
    async with _hub(broker) as hub:
        slow, fast = hub.subscribe("m1"), hub.subscribe("m1")
        received: list[DialogueUpdateV1 | None] = []

        async def keep_up() -> None:
            while True:
                received.append(await fast.get())

        reader = asyncio.create_task(keep_up())
        try:
            for count, text in enumerate(("a", "b", "c"), start=1):
                _publish(broker, _update("m1", text))  # one at a time: this subscriber keeps up
                await until(_holds(received, count), f"{text} delivered")
        finally:
            reader.cancel()

        assert slow.get_nowait() is None, "the overflowing queue says: close the socket"
        assert [e.text for e in received] == ["a", "b", "c"]  # type: ignore[union-attr]


async def test_a_message_the_hub_cannot_decode_is_skipped() -> None:
    broker = MemoryBroker(partitions=1)

    def skipped() -> float:
        labels = {"service": "live", "topic": "dialogues"}
        return REGISTRY.get_sample_value("palaver_consumer_skipped_messages_total", labels) or 0.0

    before = skipped()
    async with _hub(broker) as hub:
        queue = hub.subscribe("m1")
        broker.append("dialogues", b"{not json", key=b"m1")
        _publish(broker, _update("m1", "after"))
        await until(lambda: queue.qsize() == 1, "the next update delivered")

    assert [e.text for e in _drain(queue)] == ["after"]  # type: ignore[union-attr]
    assert skipped() == before + 1
    assert broker.records("dialogues.dlq") == [], "the hub dead-letters nothing (the store's group does)"
    assert decode(broker.records("dialogues")[-1].value).text == "after"  # type: ignore[attr-defined]

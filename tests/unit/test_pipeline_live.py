"""The live hub (api/live.py) on the real group-less consumer runner over the in-memory broker: each meeting's
subscribers get its dialogue, chat and membership events as typed messages, and no other meeting's; a new
subscriber gets what the hub remembers of the last minute; a subscriber too slow to keep up gets None (its
socket closes); a message the hub cannot decode, or an event on a topic it does not belong on, is skipped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

import api.live
import palaver.events
from api.live import LiveHub, Subscription
from api.live_buffer import RecentMessages
from api.live_messages import LiveMessage
from palaver.admission import Full
from palaver.events import (
    ChatMessageV1,
    DialogueUpdateV1,
    MeetingChangedV1,
    MeetingLinkV1,
    MeetingMemberV1,
    MeetingWatermarkV1,
    encode,
)
from palaver.events.base import EventV
from palaver.settings import Settings
from palaver.streams.memory_broker import MemoryBroker
from tests.runner_harness import until

EXAMPLES = Path(palaver.events.__file__).parent / "examples"


def _example(cls: type[EventV], path: str) -> Any:
    return cls.model_validate_json((EXAMPLES / path).read_bytes())


UPDATE: DialogueUpdateV1 = _example(DialogueUpdateV1, "dialogues/dialogue.update-v1/live-alice.json")
WATERMARK: MeetingWatermarkV1 = _example(MeetingWatermarkV1, "dialogues/meeting.watermark-v1/alice-stopped.json")
CHAT: ChatMessageV1 = _example(ChatMessageV1, "chat/chat.message-v1/alice-shares-slides.json")
JOINED: MeetingMemberV1 = _example(MeetingMemberV1, "meetings/meeting.member-v1/bob-joined-by-link.json")
ENDED: MeetingChangedV1 = _example(MeetingChangedV1, "meetings/meeting.changed-v1/standup-ended.json")
LINK: MeetingLinkV1 = _example(MeetingLinkV1, "meetings/meeting.link-v1/viewer-link-created.json")
TOPIC = {DialogueUpdateV1: "dialogues", MeetingWatermarkV1: "dialogues", ChatMessageV1: "chat",
         MeetingMemberV1: "meetings", MeetingChangedV1: "meetings", MeetingLinkV1: "meetings"}  # fmt: skip


def _update(meeting: str, text: str, revision: int = 1) -> DialogueUpdateV1:
    return UPDATE.model_copy(update={"meeting_id": meeting, "text": text, "revision": revision})


def _in(meeting: str, event: Any) -> Any:
    return event.model_copy(update={"meeting_id": meeting})


def _publish(broker: MemoryBroker, *events: EventV) -> None:
    for event in events:
        broker.append(TOPIC[type(event)], encode(event), key=event.meeting_id.encode())  # type: ignore[attr-defined]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def _hub(broker: MemoryBroker, recent: RecentMessages | None = None) -> AsyncIterator[LiveHub]:
    for topic in ("dialogues", "chat", "meetings"):
        broker.create(topic)  # as ``palaver up`` does before any service starts
    hub = LiveHub(Settings(), consumer_factory=broker.consumer, recent=recent)
    stop = asyncio.Event()
    task = asyncio.create_task(hub.run(stop))
    await until(hub.ready.is_set, "the hub follows the topics' end", task)
    try:
        yield hub
    finally:
        stop.set()
        broker.wake()
        await asyncio.wait_for(task, 5)


def _holds(items: list[Any], count: int) -> Callable[[], bool]:
    return lambda: len(items) == count


def _drain(subscription: Subscription) -> list[LiveMessage | None]:
    items = []
    while not subscription.queue.empty():
        items.append(subscription.queue.get_nowait())
    return items


def _bodies(messages: list[LiveMessage | None]) -> list[dict[str, Any]]:
    return [orjson.loads(m.text) for m in messages]  # type: ignore[union-attr]


def _texts(messages: list[LiveMessage | None]) -> list[str]:
    return [b["text"] for b in _bodies(messages)]


async def test_subscribers_get_their_meetings_messages_only_each_typed() -> None:
    broker = MemoryBroker(partitions=1)
    _publish(broker, _update("m1", "before the hub started"))
    async with _hub(broker) as hub:
        first, second = hub.subscribe("m1"), hub.subscribe("m2")
        _publish(broker, _update("m1", "a"), _update("m2", "b"), _in("m1", WATERMARK), _in("m1", CHAT),
                 _in("m1", JOINED), _in("m1", LINK), _in("m1", ENDED), _update("m2", "d"))  # fmt: skip
        await until(lambda: second.queue.qsize() == 2, "m2's messages delivered")
        await until(lambda: first.queue.qsize() == 4, "m1's messages delivered")  # one topic may lag another

        got = _bodies(_drain(first))
        assert sorted(b["type"] for b in got) == ["chat", "dialogue", "meeting", "participant"]
        by_type = {b["type"]: b for b in got}
        assert by_type["dialogue"]["text"] == "a" and by_type["dialogue"]["event"] == "dialogue.update"
        assert by_type["chat"] == {"type": "chat", "message_id": CHAT.message_id, "meeting_id": "m1",
                                   "user_id": CHAT.user_id, "text": CHAT.text, "sent_at_ms": CHAT.sent_at_ms}  # fmt: skip
        assert by_type["participant"] == {"type": "participant", "meeting_id": "m1", "user_id": JOINED.user_id,
                                          "role": JOINED.role, "status": "active", "action": "joined",
                                          "version": JOINED.member_version}  # fmt: skip
        assert (by_type["meeting"]["action"], by_type["meeting"]["ended_at_ms"]) == ("ended", ENDED.ended_at_ms)
        assert _texts(_drain(second)) == ["b", "d"]
        hub.unsubscribe(first)
        _publish(broker, _update("m1", "e"), _update("m2", "f"))
        await until(lambda: second.queue.qsize() == 1, "f delivered")
        assert first.queue.empty(), "an unsubscribed queue gets nothing"


async def test_a_new_subscriber_gets_the_newest_of_what_the_last_minute_changed() -> None:
    clock = Clock()
    broker = MemoryBroker(partitions=1)
    async with _hub(broker, RecentMessages(window_s=60, clock=clock)) as hub:
        watcher = hub.subscribe("m1")
        _publish(broker, _update("m1", "old", 1))
        await until(lambda: watcher.queue.qsize() == 1, "the first revision delivered")
        clock.now += 61
        _publish(broker, _in("m1", CHAT), _update("m1", "newer", 2), _update("m1", "older redelivered", 1),
                 _update("m2", "elsewhere"))  # fmt: skip
        await until(lambda: watcher.queue.qsize() == 4, "all delivered to the socket that was there")

        late = hub.subscribe("m1")
        assert late.queue.empty()
        remembered = sorted((m.type, orjson.loads(m.text)["text"]) for m in late.recent)  # topics interleave freely
        assert remembered == [("chat", CHAT.text), ("dialogue", "newer")]
        clock.now += 61
        assert hub.subscribe("m1").recent == [], "a minute later the store has it"


async def test_a_deleted_meeting_closes_its_sockets_and_is_forgotten() -> None:
    broker = MemoryBroker(partitions=1)
    async with _hub(broker) as hub:
        watcher = hub.subscribe("m1")
        deleted = _in("m1", ENDED).model_copy(update={"change": "deleted", "deleted": True, "title": ""})
        _publish(broker, _update("m1", "said"), deleted)
        await until(lambda: watcher.queue.qsize() == 2, "both delivered")
        messages = _drain(watcher)
        assert [m.close for m in messages] == [None, (4404, "the meeting was deleted")]  # type: ignore[union-attr]
        assert hub.subscribe("m1").recent == [], "nothing of a deleted meeting is replayed"
        broker.append("meetings", None, key=b"m1/member/usr_x")  # its tombstones
        _publish(broker, _update("m1", "after"))
        await until(lambda: watcher.queue.qsize() == 1, "the next event delivered")
        assert _texts(_drain(watcher)) == ["after"]


async def test_a_subscriber_too_slow_gets_none_and_the_others_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api.live, "QUEUE_LIMIT", 2)
    broker = MemoryBroker(partitions=1)
    async with _hub(broker) as hub:
        slow, fast = hub.subscribe("m1"), hub.subscribe("m1")
        received: list[LiveMessage | None] = []

        async def keep_up() -> None:
            while True:
                received.append(await fast.queue.get())

        reader = asyncio.create_task(keep_up())
        try:
            for count, text in enumerate(("a", "b", "c"), start=1):
                _publish(broker, _update("m1", text))  # one at a time: this subscriber keeps up
                await until(_holds(received, count), f"{text} delivered")
        finally:
            reader.cancel()

        assert slow.queue.get_nowait() is None, "the overflowing queue says: close the socket"
        assert _texts(received) == ["a", "b", "c"]


async def test_a_message_the_hub_cannot_decode_is_skipped() -> None:
    broker = MemoryBroker(partitions=1)

    def skipped(topic: str) -> float:
        labels = {"service": "live", "topic": topic}
        return REGISTRY.get_sample_value("palaver_consumer_skipped_messages_total", labels) or 0.0

    before = skipped("dialogues"), skipped("meetings")
    async with _hub(broker) as hub:
        subscription = hub.subscribe("m1")
        broker.append("dialogues", b"{not json", key=b"m1")
        broker.append("dialogues", encode(_in("m1", CHAT)), key=b"m1")  # a chat event on the wrong topic
        broker.append("meetings", None, key=b"m1/link/lnk_x")  # a tombstone is no message
        _publish(broker, _update("m1", "after"))
        await until(lambda: subscription.queue.qsize() == 1, "the next update delivered")

    assert _texts(_drain(subscription)) == ["after"]
    assert (skipped("dialogues"), skipped("meetings")) == (before[0] + 2, before[1])
    assert broker.records("dialogues.dlq") == [], "the hub dead-letters nothing (the store's group does)"


async def test_a_hub_holds_at_most_its_capacity_of_sockets() -> None:
    """One subscription is one live socket: the one beyond PALAVER_LIVE_MAX_SOCKETS is refused (1013), and
    an ended one frees its slot, once however often it is ended."""
    broker = MemoryBroker(partitions=1)
    for topic in ("dialogues", "chat", "meetings"):
        broker.create(topic)
    hub = LiveHub(Settings(live_max_sockets=2), consumer_factory=broker.consumer)
    first, second = hub.subscribe("m1"), hub.subscribe("m2")
    with pytest.raises(Full) as refused:
        hub.subscribe("m1")
    assert (refused.value.code, hub.capacity.readiness()) == (1013, "full: 2 of 2 live sockets")
    assert refused.value.reason.endswith("retry after 5 s")
    hub.unsubscribe(first)
    hub.unsubscribe(first)
    third = hub.subscribe("m1")
    with pytest.raises(Full):
        hub.subscribe("m3")
    hub.unsubscribe(second)
    hub.unsubscribe(third)
    assert hub.capacity.held == 0

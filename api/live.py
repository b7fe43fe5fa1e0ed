"""Fans dialogue events out from Kafka to the live WebSockets of each meeting.

One group-less consumer per API process reads the dialogues topic from its end; each socket gets a bounded
queue, and a socket too slow to keep up is closed (1013) rather than slowing everyone else.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict

from palaver.events import DecodeError, DialogueUpdateV1, decode
from palaver.events.registry import DIALOGUES, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_consumer

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000


class SlowConsumer(Exception):
    pass


class LiveHub:
    def __init__(self, settings: Settings):
        self._settings = settings
        self._subscribers: dict[str, set[asyncio.Queue[DialogueUpdateV1 | None]]] = defaultdict(set)
        self.task: asyncio.Task[None] | None = None
        self.ready = asyncio.Event()

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="live hub")

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
            try:
                await self.task
            except (asyncio.CancelledError, Exception):
                pass

    def subscribe(self, meeting_id: str) -> asyncio.Queue[DialogueUpdateV1 | None]:
        queue: asyncio.Queue[DialogueUpdateV1 | None] = asyncio.Queue(QUEUE_LIMIT)
        self._subscribers[meeting_id].add(queue)
        return queue

    def unsubscribe(self, meeting_id: str, queue: asyncio.Queue[DialogueUpdateV1 | None]) -> None:
        self._subscribers[meeting_id].discard(queue)
        if not self._subscribers[meeting_id]:
            del self._subscribers[meeting_id]

    def publish(self, event: DialogueUpdateV1) -> None:
        for queue in list(self._subscribers.get(event.meeting_id, ())):
            try:
                queue.put_nowait(event)
            except asyncio.QueueFull:
                queue._queue.clear()  # type: ignore[attr-defined]  # the socket is closed anyway
                queue.put_nowait(None)

    async def _run(self) -> None:
        topic = topic_name(self._settings.topic_namespace, DIALOGUES.name)
        consumer = make_consumer(self._settings, None, topic, auto_offset_reset="latest")
        await consumer.start()
        try:
            # Make sure the position is fixed at the current end before saying we are ready.
            await consumer.getmany(timeout_ms=100)
            for tp in consumer.assignment():
                await consumer.position(tp)
            self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500)
                for records in batches.values():
                    for record in records:
                        try:
                            event = decode(record.value)
                        except DecodeError as exc:
                            log.warning("invalid dialogue event at %s: %s", record.offset, exc)
                            continue
                        if isinstance(event, DialogueUpdateV1):
                            self.publish(event)
        finally:
            await consumer.stop()

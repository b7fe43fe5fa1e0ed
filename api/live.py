"""Fans dialogue events out from Kafka to the live WebSockets of each meeting.

One group-less consumer runner per API process (``palaver.streams.runner``) reads the dialogues topic from
its end; each socket gets a bounded queue, and a socket too slow to keep up is closed (1013) rather than
slowing everyone else. A message the hub cannot decode is counted and skipped (the store writer's group
dead-letters it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from palaver.events import DialogueUpdateV1, decode
from palaver.events.registry import DIALOGUES
from palaver.settings import Settings
from palaver.streams.clients import make_consumer
from palaver.streams.runner import Committed, ConsumerRunner, RunnerConfig, Step

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000


class SlowConsumer(Exception):
    pass


RUNNER = RunnerConfig(service="live", topics=(DIALOGUES,), group=None, poll_ms=500)


class LiveHub(Step):
    def __init__(self, settings: Settings, consumer_factory: Callable[..., AIOKafkaConsumer] = make_consumer):
        """``consumer_factory`` takes ``make_consumer``'s arguments (tests pass an in-memory broker's)."""
        self._settings = settings
        self._consumer_factory = consumer_factory
        self._subscribers: dict[str, set[asyncio.Queue[DialogueUpdateV1 | None]]] = defaultdict(set)
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the dialogues topic from its end until ``stop`` is set. Run again after a failure, the hub
        goes on from the new end: live sockets miss the events between (they are stored)."""
        await ConsumerRunner(self._settings, RUNNER, self, consumer_factory=self._consumer_factory).run(stop)

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

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        self.ready.set()  # the position is fixed at the topic's end: what comes next is delivered

    def process(self, record: ConsumerRecord) -> None:
        event = decode(record.value)
        if isinstance(event, DialogueUpdateV1):
            self.publish(event)

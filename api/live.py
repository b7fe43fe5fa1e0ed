"""Fans a meeting's dialogue, chat, membership and enrichment events out from Kafka to the live WebSockets of
the meeting, as typed messages (``api.live_messages``).

One group-less consumer runner per API process (``palaver.streams.runner``) reads the topics the registry
names for ``live`` (dialogues, chat, meetings, insights) from their end; each event becomes one message, encoded once
for every socket. Each socket gets a bounded queue, and a socket too slow to keep up is closed (1013)
rather than slowing everyone else; one socket beyond ``PALAVER_LIVE_MAX_SOCKETS`` is refused (1013, with a
retry hint: ``palaver.admission``). The hub also remembers each meeting's recent messages
(``api.live_buffer``) and hands them to a new subscriber, for what the store may not hold yet. A message
the hub cannot decode, or an event that does not belong on its topic, is counted and skipped (the store
writer's group dead-letters it); a tombstone (an erased meeting's key on the compacted meetings topic) is
no message.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from api.live_buffer import RecentMessages
from api.live_messages import LiveMessage, message_of
from palaver.admission import Capacity
from palaver.events import decode_on
from palaver.events.registry import LIVE, topic_name, topics_consumed_by
from palaver.settings import Settings
from palaver.streams.clients import make_consumer
from palaver.streams.runner import Committed, ConsumerRunner, RunnerConfig, Step

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000

RUNNER = RunnerConfig(service=LIVE.name, topics=topics_consumed_by(LIVE.name), group=None, poll_ms=500)


@dataclass(eq=False)
class Subscription:
    """A socket's share of its meeting: ``recent``, the messages published before it subscribed that the
    hub remembers (``RecentMessages``), and ``queue``, every message published after, then None when the
    socket fell too far behind (close it)."""

    meeting_id: str
    recent: list[LiveMessage]
    queue: asyncio.Queue[LiveMessage | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))


class LiveHub(Step):
    def __init__(self, settings: Settings, consumer_factory: Callable[..., AIOKafkaConsumer] = make_consumer,
                 recent: RecentMessages | None = None):  # fmt: skip
        """``consumer_factory`` takes ``make_consumer``'s arguments (tests pass an in-memory broker's);
        ``recent`` remembers the meetings' recent messages (tests pass one with their own clock)."""
        self._settings = settings
        self._topics = {topic_name(settings.topic_namespace, spec.name): spec for spec in RUNNER.topics}
        self._consumer_factory = consumer_factory
        self._subscribers: dict[str, set[Subscription]] = defaultdict(set)
        self.capacity = Capacity("live sockets", settings.live_max_sockets)  # one slot per subscription
        self.recent = recent if recent is not None else RecentMessages()
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the topics from their end until ``stop`` is set. Run again after a failure, the hub goes
        on from the new end: live sockets miss the events between (those are stored)."""
        await ConsumerRunner(self._settings, RUNNER, self, consumer_factory=self._consumer_factory).run(stop)

    def subscribe(self, meeting_id: str) -> Subscription:
        """Follow a meeting: what the hub remembers of it now, and a queue of what comes next (nothing is
        in neither, nothing in both: this runs between two messages). Raises ``palaver.admission.Full``
        when the process holds its most live sockets (``PALAVER_LIVE_MAX_SOCKETS``); the slot is held until
        ``unsubscribe``."""
        self.capacity.take()
        subscription = Subscription(meeting_id, self.recent.recent(meeting_id))
        self._subscribers[meeting_id].add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscribers = self._subscribers.get(subscription.meeting_id)
        if subscribers is None or subscription not in subscribers:
            return
        self.capacity.release()
        subscribers.discard(subscription)
        if not subscribers:
            del self._subscribers[subscription.meeting_id]

    def publish(self, message: LiveMessage) -> None:
        """Send ``message`` to its meeting's subscribers and remember it for the next ones."""
        if message.close is None:
            self.recent.add(message)
        else:
            self.recent.forget(message.meeting_id)  # the meeting is gone: replay nothing of it
        for subscription in list(self._subscribers.get(message.meeting_id, ())):
            queue = subscription.queue
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                queue._queue.clear()  # type: ignore[attr-defined]  # the socket is closed anyway
                queue.put_nowait(None)

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        self.ready.set()  # the position is fixed at the topic's end: what comes next is delivered

    def process(self, record: ConsumerRecord) -> None:
        if record.value is None:
            return  # a tombstone: an erased meeting's key; the deletion itself came as a meeting.changed
        message = message_of(decode_on(self._topics[record.topic], record.value))  # not another topic's event
        if message is not None:
            self.publish(message)

    async def after_batch(self) -> None:
        self.recent.expire()

"""The webhook sender: a step of the consumer runner (``palaver.streams.runner``) that reads the ``insights``
topic in its own consumer group (``webhooks``) and POSTs each meeting's final result, signed, to every URL
of ``PALAVER_WEBHOOK_URLS`` (``enrichment.webhooks_message``, ``enrichment.webhooks_delivery``). It runs in
the enrichment service's process, and only when URLs are configured (stack/web.py).

- **At-least-once.** A result's deliveries start when it is read; the checkpoint that takes its offset
  persists by awaiting them (each accepted or given up), so the offset is committed only then. A crash in
  between sends it again with the same ``X-Palaver-Delivery`` id, which the receiver dedupes on. A
  rebalance waits for the deliveries pending, as the store writer's waits for its inserts.
- **Bounded.** A delivery is not retried past ``PALAVER_WEBHOOK_RETRY_BUDGET_S`` after its result was read
  (its deadline); it makes at least one attempt, each bounded by ``PALAVER_WEBHOOK_TIMEOUT_S``. Each URL
  has its own ``PER_URL_CONCURRENCY`` slots: a slow receiver holds only its own. While
  ``max_pending_checkpoints`` checkpoints wait for deliveries the runner pauses fetching (backpressure), so
  the deliveries waiting are at most a few batches' results times the URLs.
- **Where it starts.** A group that has committed nothing yet starts at the topic's end: configuring
  webhooks does not send every result the log holds. A bad message is dead-lettered (``insights.dlq``).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from enrichment.webhooks_delivery import Outcome, Sender, make_client
from enrichment.webhooks_message import payload_body, webhook_payload
from palaver.events import decode_on
from palaver.events.registry import INSIGHTS
from palaver.settings import Settings
from palaver.streams.clients import make_producer
from palaver.streams.runner import Checkpoint, Committed, ConsumerRunner, Offsets, RunnerConfig, Step

log = logging.getLogger(__name__)

GROUP = "webhooks"
PER_URL_CONCURRENCY = 4  # deliveries in flight to one URL
READY = "webhooks ready"


class WebhookStep(Step):
    def __init__(self, settings: Settings, sender: Sender):
        self._urls = settings.webhook_urls
        self._budget_s = settings.webhook_retry_budget_s
        self._sender = sender
        self._slots = {url: asyncio.Semaphore(PER_URL_CONCURRENCY) for url in self._urls}
        self._started: list[asyncio.Task[Outcome]] = []  # deliveries of the messages since the last snapshot
        self._live: set[asyncio.Task[Outcome]] = set()
        self._ready = False

    def process(self, record: ConsumerRecord) -> None:
        event = decode_on(INSIGHTS, record.value)  # raises for a bad message: dead-lettered
        payload = webhook_payload(event)
        if payload is None:
            return
        body = payload_body(payload)
        deadline = time.monotonic() + self._budget_s
        delivery_id = payload["enrichment_id"]
        for url in self._urls:
            delivery = self._deliver(url, delivery_id, body, deadline)
            task = asyncio.create_task(delivery, name=f"webhook {delivery_id}")  # the URL may hold a token
            self._started.append(task)
            self._live.add(task)
            task.add_done_callback(self._live.discard)

    async def snapshot(self, offsets: Offsets, final: bool) -> Checkpoint:
        deliveries, self._started = self._started, []
        if not deliveries:
            return Checkpoint(offsets)

        async def persist() -> None:
            await asyncio.gather(*deliveries)

        return Checkpoint(offsets, persist)

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        if not self._ready:
            self._ready = True
            log.info("%s (%d URL(s))", READY, len(self._urls))

    async def _deliver(self, url: str, delivery_id: str, body: bytes, deadline: float) -> Outcome:
        async with self._slots[url]:
            return await self._sender.deliver(url, delivery_id, body, deadline)

    async def close(self) -> None:
        """Cancel the deliveries still running (the runner stopped: their offsets were not committed)."""
        for task in list(self._live):
            task.cancel()
        await asyncio.gather(*self._live, return_exceptions=True)


def runner_config() -> RunnerConfig:
    # Small batches: a checkpoint's deliveries are at most batch_max results x URLs.
    return RunnerConfig(service=GROUP, topics=(INSIGHTS,), group=GROUP, batch_max=50, poll_ms=200,
                        shutdown_timeout_s=5.0, consumer_config={"auto_offset_reset": "latest"})  # fmt: skip


async def run_webhooks(settings: Settings, stop: asyncio.Event) -> None:
    """Send final results to the configured webhooks until ``stop`` is set; nothing to do without URLs."""
    if not settings.webhook_urls:
        return
    assert settings.webhook_secret is not None  # Settings requires it with URLs
    producer: AIOKafkaProducer = make_producer(settings)  # dead-letters bad messages
    await producer.start()
    client = make_client(settings.webhook_timeout_s)
    secret = settings.webhook_secret.get_secret_value()
    step = WebhookStep(settings, Sender(client, secret, settings.webhook_timeout_s))
    try:
        await ConsumerRunner(settings, runner_config(), step, producer).run(stop)
    finally:
        await step.close()
        await client.aclose()
        await producer.stop()

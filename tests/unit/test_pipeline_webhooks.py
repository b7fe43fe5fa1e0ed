"""The webhook sender's real step (enrichment/webhooks.py) on the real consumer runner over the in-memory
broker, with a sender whose deliveries finish when the test says: a result's offset is committed only
once each URL's delivery of it is done, checkpoints complete in order, fetching pauses while deliveries
hold two checkpoints, a rolling result sends nothing, and a message that does not decode is
dead-lettered."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from aiokafka import TopicPartition
from pydantic import SecretStr

from enrichment.insights import insights_event
from enrichment.local import LocalBackend
from enrichment.webhooks import WebhookStep, runner_config
from enrichment.webhooks_message import payload_body, webhook_payload
from palaver.events import encode
from palaver.events.insights_v1 import MeetingInsightsV1
from palaver.settings import Settings
from palaver.streams.memory_broker import MemoryBroker
from tests.runner_harness import running, until
from tests.unit.enrichment_helpers import meeting

URLS = ("https://a.example/hook", "https://b.example/hook")
SETTINGS = Settings(webhook_urls=URLS, webhook_secret=SecretStr("whsec-0123456789abcdef"))
TOPIC = "insights"


class GatedSender:
    """Stands in for ``Sender``: a delivery of a result id ends (accepted) once the test opens its gate."""

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.asked: list[tuple[str, str, bytes]] = []
        self.done: list[tuple[str, str]] = []

    def open(self, delivery_id: str) -> None:
        self.gates.setdefault(delivery_id, asyncio.Event()).set()

    def asked_for(self, delivery_id: str) -> set[str]:
        return {url for url, d, _ in self.asked if d == delivery_id}

    async def deliver(self, url: str, delivery_id: str, body: bytes, deadline_s: float) -> str:
        assert deadline_s > time.monotonic()
        self.asked.append((url, delivery_id, body))
        await self.gates.setdefault(delivery_id, asyncio.Event()).wait()
        self.done.append((url, delivery_id))
        return "ok"


def _result(n: int, final: bool = True) -> MeetingInsightsV1:
    transcript = meeting(*[f"Ann: Bob, please send the report number {i} by Friday." for i in range(n)],
                         "Bob: Sure, I will send it.")  # fmt: skip
    return insights_event("m-1", "whisper:tiny.en", "local", "ended" if final else "rolling", n,
                          LocalBackend().enrich(transcript), {}, 1_700_000_000_000)  # fmt: skip


def _committed(broker: MemoryBroker) -> int | None:
    found = broker.committed.get(("webhooks", TopicPartition(TOPIC, 0)))
    return found.offset if found else None


async def _settle() -> None:
    """Let every ready task run (a checkpoint that could commit does)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_offsets_commit_after_deliveries_in_order_with_backpressure() -> None:
    broker = MemoryBroker(partitions=1)
    sender = GatedSender()
    step = WebhookStep(SETTINGS, sender)  # type: ignore[arg-type]
    rolling, first = _result(1, final=False), _result(2)
    broker.append(TOPIC, b'{"event": "meeting.insights", "version": 1}', key=b"m-1")
    broker.append(TOPIC, encode(rolling), key=b"m-1")
    at_first = broker.append(TOPIC, encode(first), key=b"m-1").offset
    async with running(broker, SETTINGS, runner_config(), step) as run:
        await until(lambda: sender.asked_for(first.enrichment_id) == set(URLS), "the final result sent", run.task)
        assert {d for _, d, _ in sender.asked} == {first.enrichment_id}  # the rolling result: nothing
        body = payload_body(webhook_payload(first))  # type: ignore[arg-type]
        assert all(b == body for _, _, b in sender.asked)
        dead = broker.records(f"{TOPIC}.dlq")
        assert [dict(r.headers)["dlq.service"] for r in dead] == [b"webhooks"]
        await _settle()
        assert (_committed(broker) or 0) <= at_first, "committed before the deliveries were done"

        sender.open(first.enrichment_id)
        await until(lambda: _committed(broker) == at_first + 1, "the final result committed", run.task)

        # Two more results in two batches, their deliveries held: two checkpoints wait, fetching pauses.
        second, third, fourth = _result(3), _result(4), _result(5)
        at_second = broker.append(TOPIC, encode(second), key=b"m-1").offset
        await until(lambda: sender.asked_for(second.enrichment_id) == set(URLS), "the second sent", run.task)
        at_third = broker.append(TOPIC, encode(third), key=b"m-1").offset
        await until(lambda: sender.asked_for(third.enrichment_id) == set(URLS), "the third sent", run.task)
        await until(lambda: TopicPartition(TOPIC, 0) in run.consumer.paused(), "fetching paused", run.task)
        broker.append(TOPIC, encode(fourth), key=b"m-1")

        # The third's deliveries end first: its checkpoint waits for the second's.
        sender.open(third.enrichment_id)
        await until(lambda: len(sender.done) == 4, "the third delivered", run.task)
        await _settle()
        assert _committed(broker) == at_second
        assert sender.asked_for(fourth.enrichment_id) == set()

        sender.open(second.enrichment_id)
        await until(lambda: _committed(broker) == at_third + 1, "both committed, in order", run.task)
        await until(lambda: sender.asked_for(fourth.enrichment_id) == set(URLS), "fetching resumed", run.task)
        sender.open(fourth.enrichment_id)
        await until(lambda: _committed(broker) == at_third + 2, "everything committed", run.task)


async def test_stopping_cancels_deliveries_and_commits_none_of_them() -> None:
    broker = MemoryBroker(partitions=1)
    sender = GatedSender()
    step = WebhookStep(SETTINGS, sender)  # type: ignore[arg-type]
    config = dataclasses.replace(runner_config(), shutdown_timeout_s=0.2)  # the deliveries outlast it
    result = _result(2)
    broker.append(TOPIC, encode(result), key=b"m-1")
    async with running(broker, SETTINGS, config, step) as run:
        await until(lambda: sender.asked_for(result.enrichment_id) == set(URLS), "the result sent", run.task)
    await step.close()
    assert _committed(broker) is None  # the next owner sends it again
    assert sender.done == []

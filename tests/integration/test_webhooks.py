"""Webhooks on the real broker: the enrichment process with PALAVER_WEBHOOK_URLS reads the insights topic in
its own group and POSTs each meeting's final result to two receivers served here. One fails twice with
503, then accepts: it gets exactly the final result (not the rolling one before it), signed, with the
result's id as the delivery id on every attempt. The other answers 500 for ever: it is given up after the
retry budget, counted in /metrics, and only then are the offsets committed. A message that does not decode
is dead-lettered and the rest still go out."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import uvicorn
from aiokafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from enrichment.insights import insights_event
from enrichment.local import LocalBackend
from enrichment.model import Dialogue, MeetingTranscript
from enrichment.webhooks import GROUP
from enrichment.webhooks_message import payload_body, verify, webhook_payload
from palaver.events import encode
from palaver.events.insights_v1 import MeetingInsightsV1
from palaver.events.registry import INSIGHTS, meeting_partition, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_consumer, make_producer
from tests.integration.conftest import Infra, poll, running_web
from tests.integration.infra import free_port

pytestmark = pytest.mark.integration

SECRET = "whsec-integration-7d41c2b9e0"
BUDGET_S = 8.0  # the 500-forever receiver gets attempts at about 0, 1, 3 and 7 s, then is given up
TURNS = (
    ("alice", "Good morning. We need to ship the release notes this week."),
    ("bob", "Alice, I will write the release notes by Friday."),
    ("carol", "Bob, can you also update the pricing page by next Tuesday?"),
    ("bob", "Sure, I'll update the pricing page by next Tuesday."),
)


@dataclass
class Receiver:
    """Answers POST /flaky with 503 twice then 200, POST /down with 500 always; keeps every request. A
    delivery of one of ``probes`` is answered 200 at once and kept apart."""

    requests: dict[str, list[tuple[dict[str, str], bytes]]] = field(default_factory=lambda: {"/flaky": [], "/down": []})
    probes: set[str] = field(default_factory=set)
    probed: list[str] = field(default_factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        if headers.get("x-palaver-delivery") in self.probes:
            self.probed.append(path)
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        seen = self.requests.setdefault(path, [])
        seen.append((headers, body))
        status = 500 if path == "/down" else 503 if len(seen) <= 2 else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    app, port = Receiver(), free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def _result(meeting_id: str, trigger: Any, placed: int, produced_at_ms: int | None = None) -> MeetingInsightsV1:
    dialogues, clock = [], 0
    for i, (speaker, text) in enumerate(TURNS[:placed]):
        dialogues.append(Dialogue(dialogue_id=f"{meeting_id}-d{i}", speaker=speaker, start_ms=clock,
                                  end_ms=clock + 3000, text=text))  # fmt: skip
        clock += 3500
    transcript = MeetingTranscript(dialogues=tuple(dialogues), participants=("alice", "bob", "carol"))
    result = LocalBackend().enrich(transcript)
    event = insights_event(meeting_id, "whisper:tiny.en", "local", trigger, placed, result, {},
                           produced_at_ms or int(time.time() * 1000))  # fmt: skip
    if produced_at_ms is None:
        return event
    # A probe: its own result id (as another transcript run's would be).
    return event.model_copy(update={"enrichment_id": f"enr_probe_{produced_at_ms}"})


def _metric(text: str, name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def _metrics(url: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{url}/metrics/")).text


async def _committed(settings: Settings, tp: TopicPartition) -> int | None:
    consumer = make_consumer(settings, GROUP)  # the webhooks group, only to read its commits
    await consumer.start()
    try:
        return await consumer.committed(tp)
    finally:
        await consumer.stop()


async def test_final_results_are_signed_retried_and_given_up(infra: Infra, clickhouse_client: object,
                                                             tmp_path_factory: pytest.TempPathFactory,
                                                             receiver: tuple[Receiver, str]) -> None:  # fmt: skip
    hooks, base = receiver
    urls = (f"{base}/flaky", f"{base}/down")
    async with running_web(infra, clickhouse_client, tmp_path_factory, services=frozenset({"enrichment"}),
                           webhook_urls=urls, webhook_secret=SecretStr(SECRET),
                           webhook_retry_budget_s=BUDGET_S) as web:  # fmt: skip
        settings = web.settings
        topic = topic_name(settings.topic_namespace, INSIGHTS.name)
        meeting_id = f"m-{uuid.uuid4().hex[:8]}"
        key = meeting_id.encode()
        producer = make_producer(settings)
        await producer.start()
        try:
            before = {o: _metric(await _metrics(web.url), "palaver_webhook_deliveries_total", {"outcome": o})
                      for o in ("ok", "retried", "failed")}  # fmt: skip
            # A fresh group starts at the topic's end: send final results of the meeting as probes (answered
            # at once) until one comes, so the group reads the meeting's partition from before what follows.
            for placed in range(1, 60):
                probe = _result(meeting_id, "ended", 1, produced_at_ms=placed)
                hooks.probes.add(probe.enrichment_id)
                await producer.send_and_wait(topic, encode(probe), key=key)
                if await _arrived(hooks.probed, 1.0):
                    break
            assert hooks.probed, "the webhooks group never read the topic"

            rolling, final = _result(meeting_id, "rolling", 2), _result(meeting_id, "ended", 4)
            await producer.send_and_wait(topic, b'{"event": "meeting.insights", "version": 1}', key=key)
            await producer.send_and_wait(topic, encode(rolling), key=key)
            sent = await producer.send_and_wait(topic, encode(final), key=key)
        finally:
            await producer.stop()
        tp = TopicPartition(topic, sent.partition)
        assert sent.partition == meeting_partition(meeting_id, INSIGHTS.partitions)

        flaky = await poll(lambda: _async(hooks.requests["/flaky"]), lambda r: len(r) >= 3, "three attempts")
        expected = payload_body(webhook_payload(final))  # type: ignore[arg-type]
        for headers, body in flaky:
            assert body == expected
            assert headers["x-palaver-delivery"] == final.enrichment_id
            assert headers["content-type"] == "application/json"
            assert verify(SECRET, headers["x-palaver-timestamp"], headers["x-palaver-signature"], body, time.time())
            assert not verify("not-the-secret-at-all", headers["x-palaver-timestamp"],
                              headers["x-palaver-signature"], body, time.time())  # fmt: skip
        # Commit last: read the commit, then whether the 500-forever receiver was given up by then.
        committed = await _committed(settings, tp)
        given_up = _metric(await _metrics(web.url), "palaver_webhook_deliveries_total", {"outcome": "failed"})
        if given_up == before["failed"]:
            assert committed is None or committed <= sent.offset, "committed while a delivery was pending"

        text = await poll(lambda: _metrics(web.url), lambda t: _metric(
            t, "palaver_webhook_deliveries_total", {"outcome": "failed"}) >= before["failed"] + 1,
            "the 500-forever receiver to be given up", timeout_s=60)  # fmt: skip
        moved = {o: _metric(text, "palaver_webhook_deliveries_total", {"outcome": o}) - before[o] for o in before}
        down = hooks.requests["/down"]
        assert len(down) >= 2 and all(body == expected for _, body in down)
        assert moved == {"ok": 1 + len(hooks.probed), "failed": 1, "retried": 2 + len(down) - 1}
        assert _metric(text, "palaver_webhook_delivery_seconds_count", {"outcome": "failed"}) >= 1
        await poll(lambda: _committed(settings, tp), lambda c: c == sent.offset + 1, "the offsets committed")

        assert len(hooks.requests["/flaky"]) == 3  # exactly the final result, accepted on its third attempt
        assert {h["x-palaver-delivery"] for h, _ in hooks.requests["/flaky"] + down} == {final.enrichment_id}
        assert set(hooks.requests) == {"/flaky", "/down"}

        dead = await _dead_letters(settings)
        assert [(r.key, dict(r.headers)["dlq.service"]) for r in dead] == [(key, GROUP.encode())]


async def _async(value: Any) -> Any:
    return list(value)


async def _arrived(seen: list[str], within_s: float) -> bool:
    for _ in range(int(within_s / 0.05)):
        if seen:
            return True
        await asyncio.sleep(0.05)
    return bool(seen)


async def _dead_letters(settings: Settings) -> list[Any]:
    consumer = make_consumer(settings, None)
    await consumer.start()
    try:
        tp = TopicPartition(topic_name(settings.topic_namespace, INSIGHTS.dlq or ""), 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        records: list[Any] = []
        while await consumer.position(tp) < end:
            for part in (await consumer.getmany(tp, timeout_ms=500)).values():
                records.extend(part)
        return records
    finally:
        await consumer.stop()

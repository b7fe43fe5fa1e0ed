"""Admission control over real sockets, against the web process (ingest + API) served by uvicorn as
`palaver up` serves it, with the real broker: with room for 3 streams and 2 live sockets, the next of each
is refused with 1013 and a retry hint, nothing of a refused stream reaches Kafka, and ``/readyz`` answers
503 while the process is full and 200 again once a socket ends. The pure rules are unit-tested in
tests/unit/test_admission.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import websockets
from aiokafka import TopicPartition

from ingest.protocol import CloseCode
from palaver import ids
from palaver.events.registry import AUDIO_FRAMES, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_consumer
from tests.integration.conftest import poll, running_web
from tests.integration.infra import Infra
from tests.integration.meetings import Meeting, ingest_url, live_socket, open_meeting

pytestmark = pytest.mark.integration

HEADER = json.dumps({"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1})
CAPACITY = {"ingest_max_streams": 3, "live_max_sockets": 2}
REFUSED_STREAMS = "this process holds its maximum of 3 streams; retry after 5 s"


@dataclass
class Web:
    url: str
    settings: Settings

    async def readyz(self, socket: str | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.url, timeout=30) as http:
            return await http.get("/readyz", params={"socket": socket} if socket else None)


@pytest.fixture(scope="module")
async def web(infra: Infra, clickhouse_client: object,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Web]:  # fmt: skip
    """Ingest and API in this process with room for 3 streams and 2 live sockets, on fresh topics."""
    async with running_web(infra, clickhouse_client, tmp_path_factory, frozenset({"ingest", "api"}), **CAPACITY) as served:
        yield Web(served.url, served.settings)


async def _until_closed(ws: websockets.ClientConnection) -> list[dict[str, Any]]:
    received = []
    try:
        while True:
            received.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=30)))
    except websockets.ConnectionClosed:
        return received


async def _ready(ws: websockets.ClientConnection) -> None:
    await ws.send(HEADER)
    ready = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
    assert ready["type"] == "ready", ready


async def _end(ws: websockets.ClientConnection) -> None:
    await ws.send(json.dumps({"type": "end"}))
    await _until_closed(ws)
    assert ws.close_code == 1000


async def _audio_records_by_stream(settings: Settings) -> dict[str, list[bytes]]:
    """Stream id -> the ``event`` header of each of its records on the audio topic, read to its end."""
    topic = topic_name(settings.topic_namespace, AUDIO_FRAMES.name)
    consumer = make_consumer(settings, None)
    await consumer.start()
    found: dict[str, list[bytes]] = {}
    try:
        partitions = [TopicPartition(topic, p) for p in range(AUDIO_FRAMES.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    found.setdefault(record.key.decode(), []).append(dict(record.headers)["event"])
    finally:
        await consumer.stop()
    return found


async def test_a_full_ingest_refuses_new_streams_with_1013_before_any_audio_and_says_so_on_readyz(web: Web) -> None:
    meeting: Meeting = await open_meeting(web.url, ["a", "b", "c", "late", "next"], title="admission")
    assert (await web.readyz()).json() == {"status": "ready", "checks": {"ingest": "ok", "live": "ok"}}

    async def stream(name: str) -> websockets.ClientConnection:
        return await websockets.connect(await ingest_url(web.url, meeting.meeting_id, meeting.people[name]))

    late = await stream("late")  # opened while the process had room; its header comes once it is full
    a, b, c = [await stream(name) for name in ("a", "b", "c")]
    for ws in (a, b, c):
        await _ready(ws)

    full = await web.readyz()
    assert (full.status_code, full.headers["retry-after"]) == (503, "5")
    assert full.json() == {"status": "full", "checks": {"ingest": "full: 3 of 3 streams", "live": "ok"}}
    assert (await web.readyz("live")).status_code == 200, "the live sockets still have room"

    async with await stream("next") as refused_at_once:
        assert await _until_closed(refused_at_once) == [], "refused before its header is read"
    assert (refused_at_once.close_code, refused_at_once.close_reason) == (CloseCode.SERVER_FULL, REFUSED_STREAMS)

    await late.send(HEADER)
    try:
        await late.send(np.zeros(1600, "<i2").tobytes())
    except websockets.ConnectionClosed:
        pass  # refused already: its audio is never read either way
    assert await _until_closed(late) == [], "no ready: refused in reply to its header"
    assert (late.close_code, late.close_reason) == (1013, REFUSED_STREAMS)

    await _end(a)
    await poll(web.readyz, lambda answer: answer.status_code == 200, "/readyz says ready once a stream ended")
    async with await stream("next") as admitted:  # a fresh ticket, as a retrying client takes
        await _ready(admitted)
        await _end(admitted)
    for ws in (b, c):
        await _end(ws)

    by_stream = await _audio_records_by_stream(web.settings)
    people = {name: ids.stream_id(meeting.meeting_id, meeting.people[name].user_id) for name in meeting.people}
    assert people["late"] not in by_stream, "nothing of a refused stream reaches Kafka"
    assert by_stream[people["next"]] == [b"stream.started", b"stream.stopped"], "its one admitted connection"
    assert by_stream[people["a"]] == [b"stream.started", b"stream.stopped"]


async def test_a_full_live_fan_out_refuses_new_sockets_with_1013_and_says_so_on_readyz(web: Web) -> None:
    meeting = await open_meeting(web.url, ["owner", "guest"], title="admission live")
    async with live_socket(web.url, meeting), live_socket(web.url, meeting, "guest"):
        full = await poll(lambda: web.readyz("live"), lambda answer: answer.status_code == 503,
                          "both live sockets held")  # fmt: skip
        assert full.json() == {"status": "full", "checks": {"live": "full: 2 of 2 live sockets"}}
        assert (await web.readyz("ingest")).status_code == 200, "the ingest still has room"
        async with live_socket(web.url, meeting) as third:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(third.recv(), timeout=30)
        assert (third.close_code, third.close_reason) == (
            1013, "this process holds its maximum of 2 live sockets; retry after 5 s")  # fmt: skip

    await poll(lambda: web.readyz("live"), lambda answer: answer.status_code == 200, "the live sockets ended")
    owner = meeting.people["owner"]
    async with live_socket(web.url, meeting) as admitted:
        async with owner.client() as http:
            answer = await http.post(f"/v1/meetings/{meeting.meeting_id}/chat", json={"text": "Still here?"})
            assert answer.status_code < 300, answer.text
        while (message := json.loads(await asyncio.wait_for(admitted.recv(), timeout=30)))["type"] != "chat":
            pass
        assert message["text"] == "Still here?", "an admitted socket is served"

"""The ingest limits over real sockets, against the web process (ingest + API) served by uvicorn as
`palaver up` serves it, with the real broker: an idle socket, a client sending too fast, too many
streams, a short frame in the middle, a message larger than the largest legal one, an HTTP body over the
limit. Each gets its own close code (or status) and reason; the pure rules are unit-tested in
tests/unit/test_ingest_limits.py and tests/unit/test_pipeline_ingest.py. Sockets open as clients open them:
a signed-in participant of the meeting with a fresh ingest ticket, one user per stream."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
import websockets

from ingest.protocol import MAX_MESSAGE_BYTES, CloseCode
from palaver.demo.accounts import Participant
from palaver.demo.client import stream_pcm
from tests.integration.conftest import running_web
from tests.integration.infra import Infra
from tests.integration.meetings import Meeting, ingest_url, meeting_with, open_meeting

pytestmark = pytest.mark.integration

HEADER = json.dumps({"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1})
MAX_REQUEST_BYTES = 4096
LIMITS = {"ingest_idle_s": 1.0, "ingest_max_speed": 1.0, "ingest_burst_s": 1.0,
          "ingest_max_streams_per_meeting": 2, "ingest_max_streams": 3, "max_request_bytes": MAX_REQUEST_BYTES}  # fmt: skip


@dataclass
class Web:
    url: str

    async def stream_url(self, meeting: Meeting, name: str) -> str:
        """The meeting's ingest socket for the person ``name``, with a fresh ticket."""
        return await ingest_url(self.url, meeting.meeting_id, meeting.people[name])


@pytest.fixture(scope="module")
async def web(infra: Infra, clickhouse_client: object,
              tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Web]:  # fmt: skip
    """Ingest and API in this process with small limits, on fresh topics and a fresh database."""
    async with running_web(infra, clickhouse_client, tmp_path_factory, frozenset({"ingest", "api"}), **LIMITS) as served:
        yield Web(served.url)


async def _meeting(web: Web, *names: str) -> Meeting:
    return await open_meeting(web.url, names, title="limits")


def _audio(ms: int) -> bytes:
    return np.zeros(16 * ms, "<i2").tobytes()


async def _until_closed(ws: websockets.ClientConnection) -> list[dict[str, Any]]:
    """The server's messages until it closes the socket."""
    received = []
    try:
        while True:
            received.append(json.loads(await asyncio.wait_for(ws.recv(), timeout=30)))
    except websockets.ConnectionClosed:
        return received


async def _ready(ws: websockets.ClientConnection) -> dict[str, Any]:
    await ws.send(HEADER)
    ready = json.loads(await asyncio.wait_for(ws.recv(), timeout=30))
    assert ready["type"] == "ready", ready
    return ready  # type: ignore[no-any-return]


async def test_an_idle_socket_is_closed_before_and_after_its_header(web: Web) -> None:
    meeting = await _meeting(web, "silent", "stops")
    async with websockets.connect(await web.stream_url(meeting, "silent")) as never_sends:
        await _until_closed(never_sends)
    assert (never_sends.close_code, never_sends.close_reason) == (CloseCode.IDLE, "no header for 1 s")

    async with websockets.connect(await web.stream_url(meeting, "stops")) as stops:
        ready = await _ready(stops)
        await stops.send(_audio(100))
        messages = await _until_closed(stops)
    assert (stops.close_code, stops.close_reason) == (CloseCode.IDLE, "no audio for 1 s")
    assert ready["limits"]["idle_s"] == 1.0
    assert messages[-1] == {"type": "ack", "samples": 1600}, "its audio was made durable before the close"

    async with websockets.connect(await web.stream_url(meeting, "stops")) as again:  # the slot is free
        await _ready(again)
        await again.send(json.dumps({"type": "end"}))
        await _until_closed(again)
    assert again.close_code == 1000


async def test_a_client_sending_faster_than_allowed_is_closed_and_keeps_what_passed(web: Web) -> None:
    async with websockets.connect(await web.stream_url(await _meeting(web, "hasty"), "hasty")) as ws:
        await _ready(ws)
        try:
            for _ in range(30):  # 3 s of audio at once; 1 s of burst, refilled at real time
                await ws.send(_audio(100))
        except websockets.ConnectionClosed:
            pass
        messages = await _until_closed(ws)
    assert ws.close_code == CloseCode.TOO_FAST
    assert ws.close_reason == "audio arrives faster than 1x real time for longer than the burst allows"
    acked = messages[-1]["samples"]
    assert 16000 <= acked < 48000, "the burst was taken and made durable, the rest refused"


async def test_the_demo_client_paces_itself_within_the_servers_limit(web: Web) -> None:
    pcm = np.zeros(3 * 16000, np.int16)
    meeting = await _meeting(web, "patient")
    result = await stream_pcm(web.url, meeting.meeting_id, meeting.people["patient"], pcm, speed=8.0)
    assert (result.close_code, result.acked_samples) == (1000, len(pcm))


async def test_streams_beyond_the_meeting_and_server_limits_are_refused_before_any_audio(web: Web) -> None:
    """One user is one stream of a meeting: three people fill a meeting of two, and ``a`` streaming into
    three meetings fills a server of three."""
    first = await _meeting(web, "a", "b", "c")
    a_only: dict[str, Participant] = {"a": first.people["a"]}
    second, third = await meeting_with(a_only), await meeting_with(a_only)
    async with websockets.connect(await web.stream_url(first, "a")) as a, \
            websockets.connect(await web.stream_url(first, "b")) as b, \
            websockets.connect(await web.stream_url(second, "a")) as c:  # fmt: skip
        for ws in (a, b, c):
            await _ready(ws)
        async with websockets.connect(await web.stream_url(first, "c")) as meeting_full:
            assert await _until_closed(meeting_full) == [], "no ready: refused before the header"
        async with websockets.connect(await web.stream_url(third, "a")) as server_full:
            assert await _until_closed(server_full) == []
        for ws in (a, b, c):
            await ws.send(json.dumps({"type": "end"}))
            await _until_closed(ws)
    assert (meeting_full.close_code, server_full.close_code) == (CloseCode.MEETING_FULL, 1013)
    assert meeting_full.close_reason == f"meeting {first.meeting_id} has its maximum of 2 streams"
    assert server_full.close_reason == "this process holds its maximum of 3 streams; retry after 5 s"


async def test_a_short_frame_in_the_middle_closes_with_4007(web: Web) -> None:
    async with websockets.connect(await web.stream_url(await _meeting(web, "tiny"), "tiny")) as ws:
        await _ready(ws)
        await ws.send(_audio(100))
        await ws.send(_audio(10))  # 10 ms: legal only as the last frame
        await ws.send(_audio(100))
        messages = await _until_closed(ws)
    assert ws.close_code == CloseCode.FRAME_TOO_SMALL
    assert ws.close_reason == "frame of 160 samples (10 ms) is shorter than 20 ms and not the last"
    assert messages[-1] == {"type": "ack", "samples": 1760}


async def test_a_message_larger_than_the_largest_legal_one_closes_with_1009(web: Web) -> None:
    url = await web.stream_url(await _meeting(web, "huge"), "huge")
    async with websockets.connect(url, max_size=None) as ws:
        await _ready(ws)
        await ws.send(b"\x00" * (MAX_MESSAGE_BYTES + 2))
        await _until_closed(ws)
    assert ws.close_code == 1009  # message too big: uvicorn (ws_max_size) closes before ingest reads it


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    """A body sent chunked, without Content-Length."""
    for at in range(0, len(body), 1000):
        yield body[at : at + 1000]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
async def test_an_http_body_over_the_limit_gets_413(web: Web, streamed: bool) -> None:
    body = json.dumps({"user_id": "u1", "text": "x" * MAX_REQUEST_BYTES}).encode()
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as http:
        content: Any = _chunks(body) if streamed else body
        answer = await http.post(f"/v1/meetings/m-{uuid.uuid4().hex[:8]}/chat", content=content,
                                 headers={"content-type": "application/json"})  # fmt: skip
        assert answer.status_code == 413
        assert answer.json() == {"detail": f"the request body is larger than {MAX_REQUEST_BYTES} bytes"}
        assert (await http.get("/healthz")).status_code == 200, "the server goes on"

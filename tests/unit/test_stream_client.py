"""The streaming client's reconnection (palaver/demo/client.py): its backoff and which closes it retries,
and how it resumes, against a scripted ingest peer on localhost that drops or refuses connections the way
a restarting server does (the client is the unit here; tests/integration/test_stack_reconnect.py runs it
against ``palaver up``)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve

from palaver.demo.accounts import Meeting
from palaver.demo.client import (
    NO_RECONNECT,
    Reconnect,
    ReconnectPolicy,
    StreamResult,
    retryable,
    stream_pcm,
)
from palaver.demo.run import watch_live

STEP = 1600  # samples per 100 ms frame
FAST = ReconnectPolicy(attempts=3, give_up_after_s=30, first_delay_s=0.01, max_delay_s=0.02)


def test_backoff_doubles_up_to_its_ceiling() -> None:
    policy = ReconnectPolicy(first_delay_s=0.25, max_delay_s=4.0)
    assert [policy.delay_s(n) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize(("code", "again"), [(1006, True), (1011, True), (1012, True), (4009, True), (1013, True),
                                             (1000, False), (4001, False), (4004, False), (4005, False),
                                             (4007, False), (4008, False), (4010, False), (4013, False),
                                             (4029, False)])  # fmt: skip
def test_which_closes_are_tried_again(code: int, again: bool) -> None:
    assert retryable(code) is again


@dataclass
class Connection:
    header: dict
    first_frame: bytes = b""
    samples: int = 0  # audio received


Script = Callable[[ServerConnection, Connection, int], Awaitable[None]]


@dataclass
class Tickets:
    """A speaker whose tickets are numbered, so a test sees which connection used which."""

    username: str = "s"
    user_id: str = "s"
    issued: int = 0

    async def ticket(self, meeting_id: str, use: str = "ingest") -> str:
        self.issued += 1
        return f"{use}-{meeting_id}-{self.issued}"


@dataclass
class Peer:
    """An ingest endpoint whose n-th connection (0-based) runs ``scripts[min(n, last)]``. Every connection
    must bring a ticket never seen before (a ticket opens one socket)."""

    scripts: list[Script]
    connections: list[Connection] = field(default_factory=list)
    speaker: Tickets = field(default_factory=Tickets)
    tickets: list[str] = field(default_factory=list)

    async def handle(self, ws: ServerConnection) -> None:
        ticket = ws.request.path.partition("?ticket=")[2]  # type: ignore[union-attr]
        assert ticket.startswith("ingest-m-") and ticket not in self.tickets, ws.request.path  # type: ignore[union-attr]
        self.tickets.append(ticket)
        index = len(self.connections)
        connection = Connection(json.loads(await ws.recv()))
        self.connections.append(connection)
        await self.scripts[min(index, len(self.scripts) - 1)](ws, connection, index)


async def serve_stream(
    ws: ServerConnection, connection: Connection, _: int, drop_after: int | None = None
) -> None:
    """The protocol's happy path (ready, an ack per frame, 1000 after ``end``); with ``drop_after``, the
    socket vanishes without a close frame once that many frames are acknowledged."""
    first = connection.header.get("start_sample", 0)
    await ws.send(json.dumps({"type": "ready", "first_sample": first, "stream_start_ms": 0}))
    frames = 0
    while frames != drop_after:
        message = await ws.recv()
        if isinstance(message, bytes):
            connection.first_frame = connection.first_frame or message
            connection.samples += len(message) // 2
            frames += 1
            await ws.send(json.dumps({"type": "ack", "samples": first + connection.samples}))
        elif json.loads(message) == {"type": "end"}:
            await ws.close(1000, "all audio durable")
            return
    ws.transport.abort()  # as a SIGKILLed server: no close frame


def dropping_after(frames: int) -> Script:
    return lambda ws, connection, index: serve_stream(ws, connection, index, drop_after=frames)


def closing_with(code: int) -> Script:
    async def close(ws: ServerConnection, connection: Connection, index: int) -> None:
        await ws.close(code, "scripted")

    return close


async def stream_to(peer: Peer, pcm: np.ndarray, policy: ReconnectPolicy = FAST) -> StreamResult:
    async with serve(peer.handle, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        return await stream_pcm(f"http://127.0.0.1:{port}", "m", peer.speaker, pcm, speed=50.0, reconnect=policy)


PCM = np.arange(10 * STEP, dtype=np.int16)  # one second; every sample tells its position


async def test_a_dropped_stream_resumes_at_the_acknowledged_sample() -> None:
    peer = Peer([dropping_after(4), serve_stream])
    result = await stream_to(peer, PCM)
    assert (result.close_code, result.acked_samples, result.first_sample) == (1000, len(PCM), 0)
    assert result.reconnects == (Reconnect("close 1006", 1, 4 * STEP, 4 * STEP),)
    first, resumed = peer.connections
    assert "start_sample" not in first.header and resumed.header["start_sample"] == 4 * STEP
    assert resumed.first_frame == PCM[4 * STEP : 5 * STEP].tobytes(), "the audio goes on from there"
    assert resumed.samples == len(PCM) - 4 * STEP


async def test_a_busy_stream_and_a_restarting_server_are_waited_for() -> None:
    peer = Peer([dropping_after(2), closing_with(4009), closing_with(1011), serve_stream])
    result = await stream_to(peer, PCM)
    assert (result.close_code, result.acked_samples) == (1000, len(PCM))
    assert result.reconnects == (Reconnect("close 1006", 3, 2 * STEP, 2 * STEP),)
    assert [c.header.get("start_sample") for c in peer.connections] == [None, 2 * STEP, 2 * STEP, 2 * STEP]


@dataclass(frozen=True)
class WaitsNoted(ReconnectPolicy):
    """FAST's attempts, noting the wait each retry was asked for (a 1013's hint) instead of waiting it."""

    asked: list[float | None] = field(default_factory=list)

    def delay_s(self, attempt: int, asked_s: float | None = None, spread: float = 0.0) -> float:
        self.asked.append(asked_s)
        return 0.01


async def test_a_full_server_is_tried_again_after_the_wait_its_refusal_asks_for() -> None:
    """Refused at its first connection (1013 with a hint) and on a resume, the stream waits the asked time
    each time, then goes on; a close without a hint gets the backoff."""

    async def full(ws: ServerConnection, connection: Connection, index: int) -> None:
        await ws.close(1013, "this process holds its maximum of 3 streams; retry after 5 s")

    peer = Peer([full, dropping_after(2), full, closing_with(1011), serve_stream])
    policy = WaitsNoted(attempts=3, give_up_after_s=30)
    result = await stream_to(peer, PCM, policy)
    assert (result.close_code, result.acked_samples, result.first_sample) == (1000, len(PCM), 0)
    assert policy.asked == [5.0, None, 5.0, None]
    assert result.reconnects == (Reconnect("close 1006", 3, 2 * STEP, 2 * STEP),)


async def test_reconnecting_gives_up_after_its_attempts() -> None:
    peer = Peer([dropping_after(2), closing_with(1011)])
    result = await stream_to(peer, PCM)
    assert (result.close_code, result.acked_samples, result.reconnects) == (1011, 2 * STEP, ())
    assert len(peer.connections) == 1 + FAST.attempts


async def test_bad_input_is_not_sent_again() -> None:
    peer = Peer([dropping_after(2), closing_with(4001)])
    result = await stream_to(peer, PCM)
    assert (result.close_code, result.close_reason, result.acked_samples) == (4001, "scripted", 2 * STEP)
    assert len(peer.connections) == 2


async def test_without_reconnection_the_first_drop_ends_the_stream() -> None:
    peer = Peer([dropping_after(3), serve_stream])
    result = await stream_to(peer, PCM, NO_RECONNECT)
    assert (result.close_code, result.acked_samples, result.reconnects) == (1006, 3 * STEP, ())
    assert len(peer.connections) == 1


async def test_a_stream_placed_anew_is_counted_from_where_the_server_put_it() -> None:
    """A drop before the first ack resumes at 0, which a server that still knows the stream takes for a
    fresh connection and places later: the client follows the server's ``ready``."""

    async def placed_later(ws: ServerConnection, connection: Connection, index: int) -> None:
        connection.header = {**connection.header, "start_sample": 8000}
        await serve_stream(ws, connection, index)

    peer = Peer([dropping_after(0), placed_later])
    result = await stream_to(peer, PCM)
    assert (result.close_code, result.acked_samples) == (1000, len(PCM))
    assert result.reconnects == (Reconnect("close 1006", 1, 0, 8000),)
    assert peer.connections[1].first_frame == PCM[:STEP].tobytes()


async def test_the_live_watcher_reconnects_and_shows_each_final_dialogue_once() -> None:
    def final(dialogue_id: str, text: str) -> str:
        return json.dumps({"dialogue_id": dialogue_id, "revision": 2, "status": "final", "start_ms": 0,
                           "speaker_id": "ana", "text": text})  # fmt: skip

    connections = 0
    stop = asyncio.Event()

    async def live(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await ws.send(final("d1", "first"))
        if connections == 1:
            ws.transport.abort()  # the web process died
            return
        await ws.send(final("d2", "second"))  # the new process: the stored dialogues, then live ones
        await asyncio.sleep(0.2)
        stop.set()
        await ws.wait_closed()

    said: list[str] = []
    ana = Tickets(username="ana-1a2b", user_id="ana")
    async with serve(live, "127.0.0.1", 0) as server:
        url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        meeting = Meeting("m", {"ana": ana})  # type: ignore[dict-item]
        await asyncio.wait_for(watch_live(url, meeting, said.append, stop, FAST), timeout=10)
    assert connections == 2 and ana.issued == 2, "a fresh live ticket per connection"
    assert [line.split(": ", 1)[1] for line in said] == ["first", "second"]

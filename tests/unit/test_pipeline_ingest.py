"""The ingest WebSocket (ingest/app.py) over FastAPI's TestClient, producing to the in-memory broker: frames
become audio.frame records with the stream's key and headers, acks come only after the broker has the audio,
a bad header closes with its 4xxx code, and a dropped connection resumed at ``start_sample`` loses nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.testclient import WebSocketTestSession
from starlette.types import Message, Receive, Scope, Send

from ingest.app import IngestContext, router
from ingest.limits import IngestLimits
from ingest.protocol import CloseCode
from ingest.timeline_log import TimelineLog
from palaver.auth.tokens import sign
from palaver.events import AudioFrameV1, StreamStartedV1, StreamStoppedV1, decode
from palaver.events.audio_frame_v1 import AUDIO_EVENT
from palaver.settings import Settings
from palaver.streams.memory_broker import MemoryBroker, MemoryProducer

TOPIC = "audio.frames"
SECRET = b"k" * 32
ALICE = "usr_" + "a" * 24
STREAM = f"m1/{ALICE}"
HEADER = {"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1}
FRAME_SAMPLES = 320  # 20 ms at 16 kHz


def _url(meeting_id: str = "m1", user_id: str = ALICE) -> str:
    """The stream's URL with a fresh ticket (single use: one per connection)."""
    claims = {"mtg": meeting_id, "sub": user_id, "use": "ingest", "n": uuid.uuid4().hex}
    ticket = sign(SECRET, "ticket", claims, now_ms=int(time.time() * 1000), ttl_ms=60_000)
    return f"/v1/meetings/{meeting_id}/stream?ticket={ticket}"


def _frame(n: int) -> bytes:
    """The n-th 20 ms frame, recognisable by its bytes."""
    return bytes([n % 256]) * (FRAME_SAMPLES * 2)


class _Ingest:
    """The ingest router alone in an app, producing to ``broker``; ``acks`` lists each ack the server sent,
    with how many of the stream's samples the broker had at that moment."""

    def __init__(self, limits: IngestLimits | None = None) -> None:
        self.broker = MemoryBroker()
        self.producer = MemoryProducer(self.broker)
        app = FastAPI()
        app.include_router(router)
        timelines = TimelineLog(Settings(), self.producer, self.broker.consumer)  # type: ignore[arg-type]
        app.state.ingest = self.context = IngestContext(self.producer, TOPIC, SECRET, timelines,  # type: ignore[arg-type]
                                                        limits or IngestLimits())  # fmt: skip
        self.acks: list[tuple[int, int]] = []

        async def journaled(scope: Scope, receive: Receive, send: Send) -> None:
            async def send_and_note(message: Message) -> None:
                if message["type"] == "websocket.send" and '"ack"' in (message.get("text") or ""):
                    self.acks.append((orjson.loads(message["text"])["samples"], self.durable_samples()))
                await send(message)

            await app(scope, receive, send_and_note)

        self.client = TestClient(journaled)
        self.client.__enter__()  # one event loop for all connections: the timelines' follower runs on it

    def frames(self) -> list[AudioFrameV1]:
        return [AudioFrameV1.from_kafka(r.value, dict(r.headers)) for r in self._records(AUDIO_EVENT)]

    def events(self, name: str) -> list[Any]:
        return [decode(r.value) for r in self._records(name)]

    def _records(self, event: str) -> list[Any]:
        return [r for r in self.broker.records(TOPIC) if dict(r.headers).get("event") == event.encode()]

    def durable_samples(self) -> int:
        return max((f.end_sample for f in self.frames()), default=0)


def _until(holds: Callable[[], bool], what: str) -> None:
    """From the test's thread: wait until the server (on its own thread) made ``holds()`` true."""
    deadline = time.monotonic() + 5
    while not holds():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.002)


def _connect(ws: WebSocketTestSession, **header: Any) -> dict[str, Any]:
    ws.send_text(orjson.dumps({**HEADER, **header}).decode())
    ready = ws.receive_json()
    assert ready["type"] == "ready"
    return ready  # type: ignore[no-any-return]


def _until_closed(ws: WebSocketTestSession) -> tuple[list[int], Message]:
    """Acks received until the server closes, and its close message."""
    acks = []
    while (message := ws.receive())["type"] != "websocket.close":
        acks.append(orjson.loads(message["text"])["samples"])
    return acks, message


def test_frames_become_audio_frame_records_keyed_by_stream_between_its_lifecycle_events() -> None:
    ingest = _Ingest()
    with ingest.client.websocket_connect(_url()) as ws:
        ready = _connect(ws, language="de")
        for n in range(3):
            ws.send_bytes(_frame(n))
        ws.send_json({"type": "end"})
        acks, close = _until_closed(ws)

    assert (close["code"], close["reason"]) == (1000, "all audio durable")
    assert acks and acks[-1] == 3 * FRAME_SAMPLES and acks == sorted(acks)
    records = ingest.broker.records(TOPIC)
    assert [dict(r.headers)["event"] for r in records] == [b"stream.started"] + [b"audio.frame"] * 3 + [
        b"stream.stopped"
    ]
    assert {r.key for r in records} == {STREAM.encode()} and len({r.partition for r in records}) == 1
    frames = ingest.frames()
    assert [(f.first_sample, f.pcm) for f in frames] == [(n * FRAME_SAMPLES, _frame(n)) for n in range(3)]
    for f in frames:
        assert (f.meeting_id, f.speaker_id, f.stream_id, f.sample_rate) == ("m1", ALICE, STREAM, 16000)
        assert (f.stream_start_ms, f.language) == (ready["stream_start_ms"], "de")
    [started] = ingest.events("stream.started")
    [stopped] = ingest.events("stream.stopped")
    assert isinstance(started, StreamStartedV1) and isinstance(stopped, StreamStoppedV1)
    assert (started.first_sample, started.language, started.stream_start_ms) == (
        0,
        "de",
        ready["stream_start_ms"],
    )
    assert (stopped.end_sample, stopped.reason) == (3 * FRAME_SAMPLES, "end")


def test_acks_come_only_after_the_broker_has_the_audio() -> None:
    ingest = _Ingest()
    with ingest.client.websocket_connect(_url()) as ws:
        _connect(ws)
        ws.portal.call(ingest.producer.hold)
        # The first frame alone, then two more: frames sent together may share a record batch, which the
        # broker takes whole; this one is in flight before the others are sent, so it has a batch of its own.
        ws.send_bytes(_frame(0))
        _until(lambda: len(ingest.producer.held) == 1, "the first frame in flight")
        for n in (1, 2):
            ws.send_bytes(_frame(n))
        _until(lambda: len(ingest.producer.held) == 3, "three frames in flight")
        assert ingest.acks == [], "no ack while nothing is delivered"
        ws.portal.call(ingest.producer.release, 1)
        assert ws.receive_json() == {"type": "ack", "samples": FRAME_SAMPLES}, (
            "the first frame, not the others"
        )
        ws.portal.call(ingest.producer.release, None)
        while ws.receive_json()["samples"] < 3 * FRAME_SAMPLES:
            pass
        ws.send_json({"type": "end"})
        _, close = _until_closed(ws)

    assert close["code"] == 1000
    assert ingest.acks, "the journal saw the acks"
    for acked, durable in ingest.acks:
        assert acked <= durable, f"ack {acked} sent while the broker had {durable} samples"


@pytest.mark.parametrize(("first", "code"), [
    ("not json", CloseCode.BAD_HEADER),
    (orjson.dumps({**HEADER, "start_sample": -1}).decode(), CloseCode.BAD_HEADER),
    (orjson.dumps({**HEADER, "sample_rate": 44100}).decode(), CloseCode.UNSUPPORTED_FORMAT),
    (b"\x00\x00", CloseCode.BINARY_BEFORE_HEADER),
], ids=["not-json", "negative-start", "rate", "binary"])  # fmt: skip
def test_a_bad_header_closes_with_its_code_and_produces_nothing(first: str | bytes, code: int) -> None:
    ingest = _Ingest()
    with ingest.client.websocket_connect(_url()) as ws:
        ws.send_bytes(first) if isinstance(first, bytes) else ws.send_text(first)
        close = ws.receive()

    assert close["type"] == "websocket.close" and close["code"] == code
    assert close["reason"]
    assert ingest.broker.records(TOPIC) == []


def test_a_bad_frame_closes_the_socket_and_keeps_the_audio_before_it() -> None:
    ingest = _Ingest()
    with ingest.client.websocket_connect(_url()) as ws:
        _connect(ws)
        ws.send_bytes(_frame(0))
        ws.send_bytes(b"\x01\x02\x03")  # not a whole number of samples
        _, close = _until_closed(ws)

    assert close["code"] == CloseCode.ODD_FRAME
    assert [f.pcm for f in ingest.frames()] == [_frame(0)]
    [stopped] = ingest.events("stream.stopped")
    assert (stopped.end_sample, stopped.reason) == (FRAME_SAMPLES, "error")


def test_a_dropped_connection_resumed_at_start_sample_loses_and_changes_nothing() -> None:
    ingest = _Ingest()
    with ingest.client.websocket_connect(_url()) as ws:
        ready = _connect(ws)
        for n in range(3):
            ws.send_bytes(_frame(n))
        while ws.receive_json()["samples"] < 3 * FRAME_SAMPLES:
            pass
        ws.close(1006)  # dropped; the client saw only the first frame's ack, say
        _until(lambda: len(ingest.events("stream.stopped")) == 1, "the server ended the first connection")

    with ingest.client.websocket_connect(_url()) as ws:
        resumed = _connect(ws, start_sample=FRAME_SAMPLES)
        for n in range(1, 4):  # resend what was not acknowledged, then go on
            ws.send_bytes(_frame(n))
        ws.send_json({"type": "end"})
        acks, close = _until_closed(ws)

    assert close["code"] == 1000 and acks[-1] == 4 * FRAME_SAMPLES
    assert resumed == {
        "type": "ready",
        "first_sample": FRAME_SAMPLES,
        "stream_start_ms": ready["stream_start_ms"],
        "limits": IngestLimits().wire(),
    }
    by_position: dict[int, set[bytes]] = {}
    for f in ingest.frames():
        by_position.setdefault(f.first_sample, set()).add(f.pcm)
        assert f.stream_start_ms == ready["stream_start_ms"], "one timeline for both connections"
    assert all(len(copies) == 1 for copies in by_position.values()), (
        "a resent position carries the same audio"
    )
    audio = b"".join(next(iter(by_position[p])) for p in sorted(by_position))
    assert sorted(by_position) == [n * FRAME_SAMPLES for n in range(4)], "no gap, no shifted position"
    assert audio == b"".join(_frame(n) for n in range(4))
    stops = [(s.end_sample, s.reason) for s in ingest.events("stream.stopped")]
    assert stops == [(3 * FRAME_SAMPLES, "disconnect"), (4 * FRAME_SAMPLES, "end")]
    assert [s.first_sample for s in ingest.events("stream.started")] == [0, FRAME_SAMPLES]


# --- limits (ingest/limits.py; the same over real sockets: tests/integration/test_ingest_limits.py) ---------


def _stopped(ingest: _Ingest) -> list[tuple[int, str]]:
    return [(s.end_sample, s.reason) for s in ingest.events("stream.stopped")]


def test_a_short_frame_before_end_is_the_last_frame_and_is_kept() -> None:
    ingest = _Ingest()
    with ingest.client.websocket_connect(_url()) as ws:
        _connect(ws)
        ws.send_bytes(_frame(0))
        ws.send_bytes(b"\x07\x00" * 100)  # 100 samples: the rest of the recording
        ws.send_json({"type": "end"})
        acks, close = _until_closed(ws)

    assert (close["code"], acks[-1]) == (1000, FRAME_SAMPLES + 100)
    assert _stopped(ingest) == [(FRAME_SAMPLES + 100, "end")]


def test_a_short_frame_followed_by_audio_closes_with_4007_and_keeps_the_audio_before() -> None:
    ingest = _Ingest()
    with ingest.client.websocket_connect(_url()) as ws:
        _connect(ws)
        ws.send_bytes(_frame(0))
        ws.send_bytes(b"\x07\x00" * 100)
        ws.send_bytes(_frame(1))
        acks, close = _until_closed(ws)

    assert close["code"] == CloseCode.FRAME_TOO_SMALL and "shorter than 20 ms" in close["reason"]
    assert acks[-1] == FRAME_SAMPLES + 100, "what came before the bad frame is acknowledged before the close"
    assert [len(f.pcm) for f in ingest.frames()] == [2 * FRAME_SAMPLES, 200]
    assert _stopped(ingest) == [(FRAME_SAMPLES + 100, "error")]


def test_a_socket_that_never_sends_its_header_is_closed_and_frees_its_slot() -> None:
    ingest = _Ingest(IngestLimits(idle_s=0.2))
    with ingest.client.websocket_connect(_url()) as ws:
        close = ws.receive()
    assert (close["type"], close["code"]) == ("websocket.close", CloseCode.IDLE)
    assert "no header" in close["reason"]
    assert ingest.context.active.count == 0 and ingest.broker.records(TOPIC) == []


def test_a_socket_that_stops_sending_audio_is_closed_after_its_audio_is_durable() -> None:
    ingest = _Ingest(IngestLimits(idle_s=0.3))
    with ingest.client.websocket_connect(_url()) as ws:
        _connect(ws)
        ws.send_bytes(_frame(0))
        acks, close = _until_closed(ws)  # and then nothing
    assert (close["code"], acks[-1]) == (CloseCode.IDLE, FRAME_SAMPLES)
    assert _stopped(ingest) == [(FRAME_SAMPLES, "error")]
    assert ingest.context.active.count == 0


def test_sending_faster_than_allowed_closes_with_4029_once_the_burst_is_spent() -> None:
    ingest = _Ingest(IngestLimits(max_speed=1.0, burst_s=1.0))
    second = 16000 // FRAME_SAMPLES  # frames per second of audio
    with ingest.client.websocket_connect(_url()) as ws:
        _connect(ws)
        for n in range(3 * second):  # three seconds of audio at once
            ws.send_bytes(_frame(n))
        acks, close = _until_closed(ws)
    assert close["code"] == CloseCode.TOO_FAST and "1x real time" in close["reason"]
    frames = len(ingest.frames())
    assert second <= frames < 3 * second, "the burst passed, the rest did not"
    assert acks[-1] == frames * FRAME_SAMPLES and _stopped(ingest) == [(frames * FRAME_SAMPLES, "error")]


def test_a_stream_stops_at_its_maximum_length_with_its_audio_durable() -> None:
    ingest = _Ingest(IngestLimits(max_stream_s=1))
    with ingest.client.websocket_connect(_url()) as ws:
        _connect(ws, start_sample=16000 - 2 * FRAME_SAMPLES)  # resumed 40 ms before the end
        for n in range(3):
            ws.send_bytes(_frame(n))
        acks, close = _until_closed(ws)
    assert close["code"] == CloseCode.STREAM_TOO_LONG and "1 s" in close["reason"]
    assert acks[-1] == 16000 and _stopped(ingest) == [(16000, "error")]


def test_a_start_sample_beyond_the_longest_stream_is_a_bad_header() -> None:
    ingest = _Ingest(IngestLimits(max_stream_s=1))
    with ingest.client.websocket_connect(_url()) as ws:
        ws.send_text(orjson.dumps({**HEADER, "start_sample": 16001}).decode())
        close = ws.receive()
    assert close["code"] == CloseCode.BAD_HEADER and "start_sample" in close["reason"]
    assert ingest.broker.records(TOPIC) == []


def test_streams_beyond_the_meetings_and_the_servers_limits_are_refused_before_any_audio() -> None:
    ingest = _Ingest(IngestLimits(max_streams_per_meeting=2, max_streams=3))
    with ingest.client.websocket_connect(_url("m1", "usr_" + "a" * 24)) as a, \
            ingest.client.websocket_connect(_url("m1", "usr_" + "b" * 24)) as b:  # fmt: skip
        _connect(a), _connect(b)
        with ingest.client.websocket_connect(_url("m1", "usr_" + "c" * 24)) as c:
            meeting_full = c.receive()
        with ingest.client.websocket_connect(_url("m2", "usr_" + "a" * 24)) as d:
            _connect(d)
            with ingest.client.websocket_connect(_url("m3", "usr_" + "a" * 24)) as e:
                server_full = e.receive()
            with ingest.client.websocket_connect(_url("m1", "usr_" + "a" * 24)) as again:
                busy = again.receive()
            d.send_json({"type": "end"})
            _until_closed(d)
        for ws in (a, b):
            ws.send_json({"type": "end"})
            _until_closed(ws)
    assert (meeting_full["code"], server_full["code"], busy["code"]) == (
        CloseCode.MEETING_FULL, CloseCode.SERVER_FULL, CloseCode.STREAM_BUSY)  # fmt: skip
    assert "m1" in meeting_full["reason"] and "3 streams" in server_full["reason"]
    assert ingest.context.active.count == 0
    with ingest.client.websocket_connect(_url("m1", "usr_" + "c" * 24)) as c:  # the slots are free again
        _connect(c)


def test_a_socket_whose_header_comes_after_the_process_filled_is_refused_with_1013_before_any_audio() -> None:
    """A stream is admitted when its header is accepted: a socket opened while a slot was free, whose header
    comes once others took the last one, is refused then, and nothing of it reaches the broker."""
    ingest = _Ingest(IngestLimits(max_streams=2))
    late_stream = "m2/usr_" + "c" * 24
    with ingest.client.websocket_connect(_url("m2", "usr_" + "c" * 24)) as late, \
            ingest.client.websocket_connect(_url("m1", "usr_" + "a" * 24)) as a, \
            ingest.client.websocket_connect(_url("m1", "usr_" + "b" * 24)) as b:  # fmt: skip
        _connect(a), _connect(b)
        assert ingest.context.active.capacity.full
        late.send_text(orjson.dumps(HEADER).decode())
        late.send_bytes(_frame(0))
        refused = late.receive()
        for ws in (a, b):
            ws.send_json({"type": "end"})
            _until_closed(ws)
    assert (refused["type"], refused["code"]) == ("websocket.close", CloseCode.SERVER_FULL)
    assert refused["reason"] == "this process holds its maximum of 2 streams; retry after 5 s"
    assert late_stream.encode() not in {r.key for r in ingest.broker.records(TOPIC)}
    assert ingest.context.active.count == 0 and not ingest.context.active.capacity.full


def test_audio_the_broker_does_not_take_is_never_acknowledged_and_the_socket_closes_with_1011() -> None:
    ingest = _Ingest()
    with ingest.client.websocket_connect(_url()) as ws:
        _connect(ws)
        ws.portal.call(ingest.producer.fail_next, 100)  # every delivery from now on fails
        for n in range(3):
            ws.send_bytes(_frame(n))
        ws.send_json({"type": "end"})
        acks, close = _until_closed(ws)

    assert (acks, close["code"]) == ([], CloseCode.BROKER_UNAVAILABLE)
    assert ingest.frames() == []


def test_connections_carry_their_id_and_an_idle_meeting_is_dropped_for_every_process() -> None:
    """Each connection's stream.started, frames and stream.stopped name it (where its placement record is
    on ingest.timelines); a meeting idle past the limit gets a tombstone there, which every process folds."""
    ingest = _Ingest(IngestLimits(meeting_idle_s=0.001))
    timelines = ingest.context.timelines.topic
    for _ in range(2):
        with ingest.client.websocket_connect(_url()) as ws:
            _connect(ws)
            ws.send_bytes(_frame(0))
            ws.send_json({"type": "end"})
            _until_closed(ws)
    started, stopped = ingest.events("stream.started"), ingest.events("stream.stopped")
    ids = [s.connection for s in started]
    assert len(set(ids)) == 2 and [s.connection for s in stopped] == ids
    assert [f.connection for f in ingest.frames()] == ids
    held = ingest.context.timelines.timelines
    _until(lambda: not ingest.context.connected and held["m1"].streams[STREAM].end_sample > FRAME_SAMPLES,
           "the server ended m1's last connection and recorded its end")  # fmt: skip
    time.sleep(0.01)  # idle past the limit (1 ms), in whole milliseconds
    ingest.context.next_sweep_ms = 0  # the next connection looks for idle meetings
    with ingest.client.websocket_connect(_url("m2")) as ws:
        _connect(ws)
        _until(lambda: any(r.key == b"m1" and r.value is None for r in ingest.broker.records(timelines)),
               "m1's timeline dropped")  # fmt: skip
        ws.send_json({"type": "end"})
        _until_closed(ws)
    assert set(ingest.context.timelines.timelines) == {"m2"}

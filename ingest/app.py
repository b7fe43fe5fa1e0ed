"""The ingest WebSocket: ``/v1/meetings/{meeting_id}/stream?ticket=...`` (one participant's microphone)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ingest.acks import Acker
from ingest.clock import MeetingClock, Placement
from ingest.limits import ActiveStreams, IngestLimits, RateBucket, check_start_sample, check_stream_length
from ingest.protocol import (
    CloseCode,
    ProtocolError,
    StreamFormat,
    check_after_short_frame,
    check_frame,
    is_short_frame,
    parse_control,
    parse_header,
    ready_message,
)
from palaver import ids
from palaver.auth.tickets import TicketRefused, UsedTickets, redeem
from palaver.events import AudioFrameV1, StreamStartedV1, StreamStoppedV1, encode
from palaver.metrics import INGEST_ACTIVE_STREAMS, INGEST_FRAMES, INGEST_REJECTED

log = logging.getLogger(__name__)
router = APIRouter(tags=["ingest"])


SWEEP_EVERY_MS = 60_000  # how often idle meetings' timelines are looked for (on a new connection)


@dataclass
class IngestContext:
    producer: AIOKafkaProducer
    audio_topic: str
    secret: bytes  # verifies tickets (palaver.auth.tickets)
    limits: IngestLimits = field(default_factory=IngestLimits)
    used_tickets: UsedTickets = field(default_factory=UsedTickets)
    clock: MeetingClock = field(default_factory=MeetingClock)
    active: ActiveStreams = field(init=False)
    next_sweep_ms: int = 0

    def __post_init__(self) -> None:
        self.active = ActiveStreams(self.limits)

    def release_idle_meetings(self, now_ms: int) -> None:
        """Drop the timelines of meetings idle longer than the limit; scans at most once a minute."""
        if now_ms < self.next_sweep_ms:
            return
        self.next_sweep_ms = now_ms + SWEEP_EVERY_MS
        released = self.clock.release_idle(now_ms, int(self.limits.meeting_idle_s * 1000))
        if released:
            log.info("released the timelines of %d idle meeting(s)", len(released))


class _EndOfStream(Exception):
    def __init__(self, reason: str):
        self.reason = reason


@router.websocket("/v1/meetings/{meeting_id}/stream")
async def stream_audio(ws: WebSocket, meeting_id: str, ticket: str | None = None) -> None:
    """One participant's microphone, opened with a single-use ticket (``POST
    /v1/meetings/{meeting_id}/ingest-tickets``); the speaker is the ticket's user. See ingest/protocol.py for
    the wire protocol and close codes, ingest/limits.py for the limits (docs/ingest-protocol.md documents
    both)."""
    ctx: IngestContext = ws.app.state.ingest
    await ws.accept()
    if not ids.is_valid_id_part(meeting_id):
        await _reject(ws, ProtocolError(CloseCode.BAD_IDS, "meeting id: 1-64 of [A-Za-z0-9._-]"))
        return
    try:
        speaker_id = redeem(ctx.secret, ctx.used_tickets, ticket, meeting_id, "ingest", int(time.time() * 1000)).user_id
    except TicketRefused as refused:
        await _reject(ws, ProtocolError(refused.code, refused.reason))
        return
    stream = ids.stream_id(meeting_id, speaker_id)
    try:
        ctx.active.admit(meeting_id, stream)
    except ProtocolError as err:
        await _reject(ws, err)
        return
    INGEST_ACTIVE_STREAMS.inc()
    try:
        await _serve_stream(ws, ctx, meeting_id, speaker_id, stream)
    finally:
        ctx.active.release(meeting_id, stream)
        INGEST_ACTIVE_STREAMS.dec()


async def _serve_stream(ws: WebSocket, ctx: IngestContext, meeting_id: str, speaker_id: str, stream: str) -> None:
    try:
        fmt = await _receive_header(ws, ctx.limits.idle_s)
        check_start_sample(fmt.start_sample, fmt.sample_rate, ctx.limits)
    except ProtocolError as err:
        await _reject(ws, err)
        return
    except _EndOfStream:
        return
    now_ms = int(time.time() * 1000)
    ctx.release_idle_meetings(now_ms)
    placed = ctx.clock.place(meeting_id, stream, now_ms, fmt.start_sample, fmt.sample_rate)
    reached = _Reached(placed.first_sample)
    try:
        await _stream_placed(ws, ctx, fmt, placed, speaker_id, reached)
    finally:  # whatever ended the connection: a later one of the stream starts after its audio
        ctx.clock.note_end(placed, reached.sample, int(time.time() * 1000))


@dataclass
class _Reached:
    sample: int  # the stream sample this connection's audio reached


async def _stream_placed(ws: WebSocket, ctx: IngestContext, fmt: StreamFormat, placed: Placement,
                         speaker_id: str, reached: _Reached) -> None:  # fmt: skip
    """The connection once its header is accepted and placed."""
    meeting_id, stream = placed.meeting_id, placed.stream
    start_ms = placed.stream_start_ms
    started = StreamStartedV1(
        event_id=ids.event_id("stream.started", stream, placed.first_sample),
        meeting_id=meeting_id,
        speaker_id=speaker_id,
        stream_id=stream,
        sample_rate=fmt.sample_rate,
        stream_start_ms=start_ms,
        first_sample=placed.first_sample,
        language=fmt.language,
    )
    try:
        await _send_event(ctx, stream, started)
    except KafkaError as exc:
        await _reject(ws, ProtocolError(CloseCode.BROKER_UNAVAILABLE, f"broker unavailable: {exc}"))
        return

    await ws.send_text(ready_message(placed.first_sample, start_ms, ctx.limits.wire()))
    acker = Acker(ws.send_text)
    next_sample = placed.first_sample
    failure: ProtocolError | None = None
    reason = "end"
    loop = asyncio.get_running_loop()
    bucket = RateBucket(fmt.sample_rate, ctx.limits.max_speed, ctx.limits.burst_s, loop.time())
    short_frame: int | None = None  # the samples of the frame before, when it was shorter than 20 ms
    try:
        while True:
            message = await _receive(ws, ctx.limits.idle_s, "audio")
            if message["type"] == "websocket.disconnect":
                reason = "disconnect"
                break
            if message.get("bytes") is not None:
                samples = check_frame(len(message["bytes"]), fmt)
                check_after_short_frame(short_frame, fmt)
                check_stream_length(next_sample + samples, fmt.sample_rate, ctx.limits)
                bucket.take(samples, loop.time())
                short_frame = samples if is_short_frame(samples, fmt) else None
                frame = AudioFrameV1(
                    meeting_id, speaker_id, stream, fmt.sample_rate, next_sample, start_ms, message["bytes"],
                    language=fmt.language,
                )
                delivery = await ctx.producer.send(
                    ctx.audio_topic, frame.pcm, key=stream.encode(), headers=frame.kafka_headers()
                )
                next_sample = reached.sample = next_sample + samples
                acker.track(delivery, next_sample)
                INGEST_FRAMES.inc()
            elif parse_control(message.get("text") or "") == "end":
                break
    except ProtocolError as err:
        failure, reason = err, "error"
    except WebSocketDisconnect:
        reason = "disconnect"

    try:
        durable = await acker.drain()
        await _send_event(ctx, stream, _stopped(started, durable, reason))
    except KafkaError as exc:
        failure = ProtocolError(CloseCode.BROKER_UNAVAILABLE, f"broker unavailable: {exc}")
    finally:
        await acker.close()
    if failure:
        await _reject(ws, failure)
    elif reason == "end" and ws.application_state == WebSocketState.CONNECTED:
        await ws.close(code=1000, reason="all audio durable")


async def _receive(ws: WebSocket, idle_s: float, awaited: str) -> dict[str, Any]:
    """The next message; raises ProtocolError(IDLE) when none comes within ``idle_s`` (an idle socket would
    hold its speaker's slot forever)."""
    try:
        return await asyncio.wait_for(ws.receive(), timeout=idle_s)
    except TimeoutError:
        raise ProtocolError(CloseCode.IDLE, f"no {awaited} for {idle_s:g} s") from None


async def _receive_header(ws: WebSocket, idle_s: float) -> StreamFormat:
    message = await _receive(ws, idle_s, "header")
    if message["type"] == "websocket.disconnect":
        raise _EndOfStream("disconnect")
    if message.get("bytes") is not None:
        raise ProtocolError(CloseCode.BINARY_BEFORE_HEADER, "send the JSON header before any audio")
    return parse_header(message.get("text") or "")


def _stopped(started: StreamStartedV1, end_sample: int, reason: str) -> StreamStoppedV1:
    return StreamStoppedV1(
        event_id=ids.event_id("stream.stopped", started.stream_id, end_sample),
        meeting_id=started.meeting_id,
        speaker_id=started.speaker_id,
        stream_id=started.stream_id,
        stream_start_ms=started.stream_start_ms,
        end_sample=end_sample,
        sample_rate=started.sample_rate,
        reason=reason,  # type: ignore[arg-type]
    )


async def _send_event(ctx: IngestContext, stream: str, event: StreamStartedV1 | StreamStoppedV1) -> None:
    headers = [("event", event.event.encode()), ("version", b"1")]
    await ctx.producer.send_and_wait(ctx.audio_topic, encode(event), key=stream.encode(), headers=headers)


async def _reject(ws: WebSocket, err: ProtocolError) -> None:
    INGEST_REJECTED.labels(code=str(err.code)).inc()
    log.info("closing stream with %s: %s", err.code, err.reason)
    if ws.application_state == WebSocketState.CONNECTED:
        await ws.close(code=err.code, reason=err.reason)

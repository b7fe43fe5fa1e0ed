"""The ingest WebSocket: ``/v1/meetings/{meeting_id}/streams/{speaker_id}``."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ingest.acks import Acker
from ingest.clock import MeetingClock
from ingest.protocol import (
    CloseCode,
    ProtocolError,
    StreamFormat,
    check_frame,
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


@dataclass
class IngestContext:
    producer: AIOKafkaProducer
    audio_topic: str
    secret: bytes  # verifies tickets (palaver.auth.tickets)
    used_tickets: UsedTickets = field(default_factory=UsedTickets)
    clock: MeetingClock = field(default_factory=MeetingClock)
    active: set[str] = field(default_factory=set)


class _EndOfStream(Exception):
    def __init__(self, reason: str):
        self.reason = reason


@router.websocket("/v1/meetings/{meeting_id}/stream")
async def stream_audio(ws: WebSocket, meeting_id: str, ticket: str | None = None) -> None:
    """One participant's microphone, opened with a single-use ticket (``POST
    /v1/meetings/{meeting_id}/ingest-tickets``); the speaker is the ticket's user. See ingest/protocol.py for
    the wire protocol and close codes."""
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
    if stream in ctx.active:
        await _reject(ws, ProtocolError(CloseCode.STREAM_BUSY, f"stream {stream} is already connected"))
        return
    ctx.active.add(stream)
    INGEST_ACTIVE_STREAMS.inc()
    try:
        await _serve_stream(ws, ctx, meeting_id, speaker_id, stream)
    finally:
        ctx.active.discard(stream)
        INGEST_ACTIVE_STREAMS.dec()


async def _serve_stream(ws: WebSocket, ctx: IngestContext, meeting_id: str, speaker_id: str, stream: str) -> None:
    try:
        fmt = await _receive_header(ws)
    except ProtocolError as err:
        await _reject(ws, err)
        return
    except _EndOfStream:
        return
    placed = ctx.clock.place(meeting_id, stream, int(time.time() * 1000), fmt.start_sample, fmt.sample_rate)
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

    await ws.send_text(ready_message(placed.first_sample, start_ms))
    acker = Acker(ws.send_text)
    next_sample = placed.first_sample
    failure: ProtocolError | None = None
    reason = "end"
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                reason = "disconnect"
                break
            if message.get("bytes") is not None:
                samples = check_frame(len(message["bytes"]), fmt)
                frame = AudioFrameV1(
                    meeting_id, speaker_id, stream, fmt.sample_rate, next_sample, start_ms, message["bytes"],
                    language=fmt.language,
                )
                delivery = await ctx.producer.send(
                    ctx.audio_topic, frame.pcm, key=stream.encode(), headers=frame.kafka_headers()
                )
                next_sample += samples
                acker.track(delivery, next_sample)
                INGEST_FRAMES.inc()
            elif parse_control(message.get("text") or "") == "end":
                break
    except ProtocolError as err:
        failure, reason = err, "error"
    except WebSocketDisconnect:
        reason = "disconnect"

    ctx.clock.note_end(stream, next_sample)
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


async def _receive_header(ws: WebSocket) -> StreamFormat:
    message = await ws.receive()
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

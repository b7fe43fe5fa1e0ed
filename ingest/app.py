"""The ingest WebSocket: ``/v1/meetings/{meeting_id}/stream?ticket=...`` (one participant's microphone)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field, replace

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ingest import clock
from ingest.acks import Acker
from ingest.batcher import FrameBatcher
from ingest.frames import FrameHeaders
from ingest.idle import IdleWatch
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
from ingest.timeline_log import TimelineLog
from palaver import ids
from palaver.auth.tickets import TicketRefused, UsedTickets, redeem
from palaver.events import AudioFrameV1, StreamStartedV1, StreamStoppedV1, encode
from palaver.metrics import INGEST_ACTIVE_STREAMS, INGEST_FRAMES, INGEST_REJECTED, SOCKETS_REFUSED

log = logging.getLogger(__name__)
router = APIRouter(tags=["ingest"])


SWEEP_EVERY_MS = 60_000  # how often idle meetings' timelines are looked for (on a new connection)


@dataclass
class IngestContext:
    producer: AIOKafkaProducer
    audio_topic: str
    secret: bytes  # verifies tickets (palaver.auth.tickets)
    timelines: TimelineLog  # the meetings' timelines, shared with every ingest process through Kafka
    limits: IngestLimits = field(default_factory=IngestLimits)
    used_tickets: UsedTickets = field(default_factory=UsedTickets)
    active: ActiveStreams = field(init=False)
    batcher: FrameBatcher = field(init=False)  # the audio frames' way to the producer
    connected: Counter[str] = field(default_factory=Counter)  # meeting -> this process's connections
    next_sweep_ms: int = 0
    background: set[asyncio.Task[None]] = field(default_factory=set)  # tombstones in flight (tasks are weak)

    def __post_init__(self) -> None:
        self.active = ActiveStreams(self.limits)
        self.batcher = FrameBatcher(self.producer, self.audio_topic)

    def release_idle_meetings(self, now_ms: int) -> None:
        """Drop (tombstone, in the background) the timelines of meetings idle longer than the limit; scans
        at most once a minute. Every process may drop the same one: the tombstones agree."""
        if now_ms < self.next_sweep_ms:
            return
        self.next_sweep_ms = now_ms + SWEEP_EVERY_MS
        connected = {m for m, n in self.connected.items() if n > 0}
        released = clock.idle(self.timelines.timelines, connected, now_ms, int(self.limits.meeting_idle_s * 1000))
        for meeting_id in released:
            self._drop(meeting_id, "idle")
        if released:
            log.info("releasing the timelines of %d idle meeting(s)", len(released))

    def forget(self, meeting_id: str) -> None:
        """The meeting ended: drop its timeline in every process (a tombstone, written in the background).
        Connections still open keep their placement; a stream connecting later starts a new timeline."""
        self._drop(meeting_id, "ended")

    def _drop(self, meeting_id: str, why: str) -> None:
        task = asyncio.get_running_loop().create_task(self._tombstone(meeting_id, why))
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    async def _tombstone(self, meeting_id: str, why: str) -> None:
        try:
            await self.timelines.write(meeting_id, None)
        except KafkaError as exc:  # the timeline stays until the meeting is idle long enough (again)
            log.warning("could not drop the timeline of %s meeting %s: %r", why, meeting_id, exc)


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
        ctx.active.check(meeting_id, stream)  # a full process reads nothing of a new socket
        fmt = await _receive_header(ws, ctx.limits.idle_s)
        check_start_sample(fmt.start_sample, fmt.sample_rate, ctx.limits)
        # Admitted from here until the connection ends; the process may have filled while the header came.
        ctx.active.admit(meeting_id, stream)
    except ProtocolError as err:
        await _reject(ws, err)
        return
    except _EndOfStream:
        return
    INGEST_ACTIVE_STREAMS.inc()
    try:
        await _serve_stream(ws, ctx, fmt, meeting_id, speaker_id, stream)
    finally:
        ctx.active.release(meeting_id, stream)
        INGEST_ACTIVE_STREAMS.dec()


async def _serve_stream(ws: WebSocket, ctx: IngestContext, fmt: StreamFormat, meeting_id: str, speaker_id: str,
                        stream: str) -> None:  # fmt: skip
    try:
        ctx.release_idle_meetings(int(time.time() * 1000))
        placed = await _place(ctx, meeting_id, stream, fmt)
    except KafkaError as exc:
        await _reject(ws, ProtocolError(CloseCode.BROKER_UNAVAILABLE, f"broker unavailable: {exc}"))
        return
    ctx.connected[meeting_id] += 1
    reached = _Reached(placed.first_sample)
    try:
        await _stream_placed(ws, ctx, fmt, placed, meeting_id, stream, speaker_id, reached)
    finally:  # whatever ended the connection: a later one of the stream starts after its audio
        ctx.connected[meeting_id] -= 1
        if not ctx.connected[meeting_id]:
            del ctx.connected[meeting_id]
        await _note_end(ctx, meeting_id, stream, reached.sample)


async def _place(ctx: IngestContext, meeting_id: str, stream: str, fmt: StreamFormat) -> clock.Placement:
    """Place the connection on its meeting's shared timeline: write the proposal, answer from the fold
    read back (ingest/timeline_log.py). Raises KafkaError."""
    now_ms = int(time.time() * 1000)
    proposal = clock.propose(ctx.timelines.timelines.get(meeting_id), stream, now_ms, fmt.start_sample, fmt.sample_rate)
    written = await ctx.timelines.write(meeting_id, proposal)
    assert written.after is not None  # the fold after a record that is not a tombstone
    placed = clock.place(written.before, written.after, stream, now_ms, fmt.start_sample, fmt.sample_rate)
    return replace(placed, connection=written.where)


async def _note_end(ctx: IngestContext, meeting_id: str, stream: str, end_sample: int) -> None:
    """Record where the stream's audio reached (a later fresh connection starts after it); nothing when the
    meeting's timeline was dropped meanwhile."""
    held = ctx.timelines.timelines.get(meeting_id)
    if held is None or stream not in held.streams:
        return
    try:
        await ctx.timelines.write(meeting_id, clock.ended(held, stream, end_sample, int(time.time() * 1000)))
    except KafkaError as exc:  # a later fresh connection then starts at the current time only
        log.warning("could not record the end of stream %s: %r", stream, exc)


@dataclass
class _Reached:
    sample: int  # the stream sample this connection's audio reached


async def _stream_placed(ws: WebSocket, ctx: IngestContext, fmt: StreamFormat, placed: clock.Placement,
                         meeting_id: str, stream: str, speaker_id: str, reached: _Reached) -> None:  # fmt: skip
    """The connection once its header is accepted and placed."""
    start_ms = placed.stream_start_ms
    started = StreamStartedV1(
        event_id=ids.event_id("stream.started", stream, placed.first_sample),
        meeting_id=meeting_id,
        speaker_id=speaker_id,
        stream_id=stream,
        sample_rate=fmt.sample_rate,
        stream_start_ms=start_ms,
        first_sample=placed.first_sample,
        timeline_epoch_ms=placed.epoch_ms,
        language=fmt.language,
        connection=placed.connection,
    )
    try:
        partition = await _send_event(ctx, stream, started)
    except KafkaError as exc:
        await _reject(ws, ProtocolError(CloseCode.BROKER_UNAVAILABLE, f"broker unavailable: {exc}"))
        return

    await ws.send_text(ready_message(placed.first_sample, start_ms, ctx.limits.wire()))
    acker = Acker(ws.send_text)
    headers = FrameHeaders(AudioFrameV1(meeting_id, speaker_id, stream, fmt.sample_rate, placed.first_sample,
                                        start_ms, b"", language=fmt.language, connection=placed.connection))  # fmt: skip
    # In a task of its own: each message then resumes the few frames of that task, not the twenty-odd
    # coroutines of the ASGI stack (middlewares, router) above this handler. Cancelling the handler
    # cancels it too.
    reason, failure = await asyncio.create_task(
        _take_frames(ws, ctx, fmt, placed.first_sample, stream.encode(), partition, headers, acker, reached)
    )
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


async def _take_frames(ws: WebSocket, ctx: IngestContext, fmt: StreamFormat, first_sample: int, key: bytes,
                       partition: int, headers: FrameHeaders, acker: Acker, reached: _Reached) -> tuple[str, ProtocolError | None]:  # fmt: skip
    """Take the connection's frames until ``end``, a disconnect or bad input; return why it ended (end,
    disconnect, error) and the error. Per frame only what changes is made: the headers' constant part is
    encoded once per connection, the frames go to ``partition`` (where stream.started went: the producer's
    partition for ``key``), and nothing is awaited but the next message (the batcher and the acker do the
    rest)."""
    batcher = ctx.batcher
    next_sample = first_sample
    loop = asyncio.get_running_loop()
    bucket = RateBucket(fmt.sample_rate, ctx.limits.max_speed, ctx.limits.burst_s, loop.time())
    short_frame: int | None = None  # the samples of the frame before, when it was shorter than 20 ms
    try:
        with IdleWatch(ctx.limits.idle_s) as idle:
            while True:
                message = await idle.receive(ws.receive, "audio")
                if message["type"] == "websocket.disconnect":
                    return "disconnect", None
                pcm = message.get("bytes")
                if pcm is not None:
                    samples = check_frame(len(pcm), fmt)
                    check_after_short_frame(short_frame, fmt)
                    check_stream_length(next_sample + samples, fmt.sample_rate, ctx.limits)
                    bucket.take(samples, loop.time())
                    short_frame = samples if is_short_frame(samples, fmt) else None
                    if batcher.backlogged:  # the broker falls behind: stop reading, TCP pushes back
                        paused_at = loop.time()
                        await batcher.room()
                        resumed_at = loop.time()  # the audio that piled up meanwhile is the server's delay
                        bucket.excuse(resumed_at - paused_at, resumed_at)
                    delivery = batcher.add(partition, key, pcm, headers.at(next_sample))
                    next_sample = reached.sample = next_sample + samples
                    acker.track(delivery, next_sample)
                    INGEST_FRAMES.inc()
                elif parse_control(message.get("text") or "") == "end":
                    return "end", None
    except ProtocolError as err:
        return "error", err
    except WebSocketDisconnect:
        return "disconnect", None


async def _receive_header(ws: WebSocket, idle_s: float) -> StreamFormat:
    with IdleWatch(idle_s) as idle:
        message = await idle.receive(ws.receive, "header")
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
        connection=started.connection,
    )


async def _send_event(ctx: IngestContext, stream: str, event: StreamStartedV1 | StreamStoppedV1) -> int:
    """Produce a lifecycle event of ``stream`` and wait until the broker has it; return its partition."""
    headers = [("event", event.event.encode()), ("version", b"1")]
    meta = await ctx.producer.send_and_wait(ctx.audio_topic, encode(event), key=stream.encode(), headers=headers)
    return meta.partition


async def _reject(ws: WebSocket, err: ProtocolError) -> None:
    INGEST_REJECTED.labels(code=str(err.code)).inc()
    if err.code == CloseCode.SERVER_FULL:
        SOCKETS_REFUSED.labels(socket="ingest").inc()
    log.info("closing stream with %s: %s", err.code, err.reason)
    if ws.application_state == WebSocketState.CONNECTED:
        await ws.close(code=err.code, reason=err.reason)

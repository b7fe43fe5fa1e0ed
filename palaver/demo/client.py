"""A streaming client for the ingest protocol (what a browser does), used by the demo, tests and bench.

It survives a dropped socket (the server restarted, the network blinked): it reconnects with backoff,
resumes the stream at the samples the server acknowledged (``start_sample`` in the header), sends the
audio from there, catches up on what the outage held back and goes on at its pace. What it did is in
``StreamResult.reconnects`` and in the log (``palaver.demo.client``). It never sends faster than the
server's ``ready`` says it may (``SendAllowance``): a catch-up, or a pace above the server's limit, is
slowed to stay within it rather than closed with 4029.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

import httpx
import numpy as np
import websockets

from palaver import ids
from palaver.ack_log import AckLog, ConnectionLog
from palaver.admission import TRY_AGAIN_LATER, retry_after_s
from palaver.tls_client import websocket_options

log = logging.getLogger(__name__)

ABNORMAL_CLOSURE = 1006  # the websocket code for "the connection ended without a close frame"
# Closes that say "try again": going away, no close frame (the server died), the broker is unavailable,
# service restart, try again later, this stream still connected (the server has not yet noticed that
# the old socket is gone). 1013 is also a full server's (palaver.admission): its reason says how long to wait.
RETRYABLE_CLOSES = frozenset({1001, ABNORMAL_CLOSURE, 1011, 1012, TRY_AGAIN_LATER, 4009})


@dataclass(frozen=True)
class ReconnectPolicy:
    """How hard a client tries to get a dropped stream back: at most ``attempts`` connections per outage,
    none later than ``give_up_after_s`` after the drop, waiting ``first_delay_s`` before the first and
    twice as long before each next one, at most ``max_delay_s``."""

    attempts: int = 30
    give_up_after_s: float = 120.0
    first_delay_s: float = 0.25
    max_delay_s: float = 4.0

    def delay_s(self, attempt: int, asked_s: float | None = None, spread: float = 0.0) -> float:
        """The wait before connection attempt ``attempt`` (1-based) of an outage. When the server asked for
        a wait (``asked_s``: a full server's 1013 says ``retry after N s``), at least that, stretched by up to
        half again by ``spread`` (a random number in [0, 1)), so that the clients a full server refused at
        once do not all come back at once."""
        backoff = min(self.max_delay_s, self.first_delay_s * 2 ** (attempt - 1))
        return backoff if asked_s is None else max(backoff, asked_s * (1 + 0.5 * spread))


RECONNECT = ReconnectPolicy()
NO_RECONNECT = ReconnectPolicy(attempts=0)  # one connection: a drop ends the stream (its close code says so)


def asked_wait_s(close_code: int, close_reason: str) -> float | None:
    """The wait a close asks for before trying again: a full server's 1013 says ``retry after N s``."""
    return retry_after_s(close_reason) if close_code == TRY_AGAIN_LATER else None


def retryable(close_code: int) -> bool:
    """Whether a connection that ended with ``close_code`` is worth trying again. 1000 is the end of the
    stream; any other 4xxx than 4009 is about the client's input or a limit it passed, which
    sending again cannot mend."""
    return close_code in RETRYABLE_CLOSES


@dataclass(frozen=True)
class Reconnect:
    """One outage of a stream: why the connection before it ended (``after``), the connection attempts it
    took, the ``start_sample`` the client asked for (the samples acknowledged when the socket dropped) and
    where the server placed the resumed audio (its ``ready``): the same, except for a resume at 0, which
    the protocol cannot tell from a fresh connection."""

    after: str
    attempts: int
    start_sample: int
    first_sample: int


@dataclass(frozen=True)
class StreamResult:
    close_code: int  # the last connection's; ABNORMAL_CLOSURE when the socket dropped without a close frame
    close_reason: str
    acked_samples: int  # samples of ``pcm`` the server acknowledged as durable
    first_sample: int  # where the server placed the first connection's audio in the stream
    reconnects: tuple[Reconnect, ...] = ()


class SendAllowance:
    """The client's side of the server's send-rate limit (the ``limits`` of ``ready``: ``max_speed`` x real
    time sustained, ``burst_s`` seconds of audio ahead of it): a token bucket on samples kept below the
    server's, so audio sent within it is not refused. It refills at ``speed_margin`` of the server's speed
    and holds ``burst_margin`` of its burst: the rest absorbs a network that holds frames back and then
    delivers them at once (the server counts them when they arrive), up to about
    ``(1 - burst_margin) * burst_s / max_speed`` seconds of delay (3.3 s at the defaults). The server's
    bucket starts before the client's, which starts at ``ready``."""

    def __init__(self, max_speed: float, burst_s: float, sample_rate: int, now_s: float,
                 speed_margin: float = 0.9, burst_margin: float = 0.5):  # fmt: skip
        self.rate = speed_margin * max_speed * sample_rate
        self.capacity = burst_margin * burst_s * sample_rate
        self.level = self.capacity
        self.at = now_s

    def wait_s(self, samples: int, now_s: float) -> float:
        """How long to wait from ``now_s`` before ``samples`` may be sent."""
        level = min(self.capacity, self.level + (now_s - self.at) * self.rate)
        return max(0.0, (samples - level) / self.rate)

    def spend(self, samples: int, now_s: float) -> None:
        self.level = min(self.capacity, self.level + (now_s - self.at) * self.rate) - samples
        self.at = now_s


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


@dataclass
class _Outage:
    why: str  # how the connection before it ended
    asked: int  # the start_sample of the reconnections
    attempts: int = 0


@dataclass
class _Progress:
    """Where a stream stands across its connections; ``acked`` counts from the stream's sample 0."""

    base: int | None = None  # the stream sample of pcm[0]: the first connection's ``first_sample``
    acked: int = 0  # the stream's first ``acked`` samples are durable
    reconnects: list[Reconnect] = field(default_factory=list)

    @property
    def acked_pcm(self) -> int:
        """How many of pcm's samples are durable."""
        return max(0, self.acked - (self.base or 0))

    def ready(self, first_sample: int, outage: _Outage | None) -> Reconnect | None:
        """Note the server's ``ready``; for a reconnection, return its record."""
        if self.base is None:
            self.base = self.acked = first_sample
            return None
        assert outage is not None
        if first_sample != outage.asked:  # a resume at 0 that the server took for a fresh connection
            self.base = first_sample - (outage.asked - self.base)
            self.acked = first_sample
        record = Reconnect(outage.why, outage.attempts, outage.asked, first_sample)
        self.reconnects.append(record)
        return record


@dataclass(frozen=True)
class _Ended:
    close_code: int
    close_reason: str
    ready: bool  # the server accepted the header

    @property
    def why(self) -> str:
        return f"close {self.close_code}" + (f": {self.close_reason}" if self.close_reason else "")


class Speaker(Protocol):
    """Who streams: a name for the log, the user id the server makes the stream's speaker (the ticket's
    user) and a source of single-use tickets (``palaver.demo.accounts``)."""

    username: str
    user_id: str

    async def ticket(self, meeting_id: str, use: Literal["ingest", "live"] = "ingest") -> str: ...


async def stream_pcm(
    base_url: str, meeting_id: str, speaker: Speaker, pcm: np.ndarray, *, frame_ms: int = 100,
    speed: float = 1.0, sample_rate: int = 16000, language: str | None = None,
    reconnect: ReconnectPolicy = RECONNECT, tls: ssl.SSLContext | None = None, ack_log: AckLog | None = None,
) -> StreamResult:  # fmt: skip
    """Send int16 ``pcm`` at ``speed`` x real time, then ``end``; return once the server closed the socket
    with 1000 (all audio durable), with a close that sending again cannot mend (a 4xxx), or when
    reconnecting gave up (``reconnect``; ``NO_RECONNECT``: the first drop ends the stream). ``language`` (a
    Whisper language code) goes into the header; None leaves it to the STT worker's default.

    A dropped socket (a retryable close, ``RETRYABLE_CLOSES``) is reconnected with ``start_sample`` = the
    samples acknowledged so far, and the audio is sent again from there. The pace keeps to the first
    connection's start: audio an outage held back goes as fast as the socket takes it, then real time
    again. A connection the server closes with a retryable code (the first one too) is tried again; after a
    full server's 1013, once the wait its reason asks for has passed (``retry after N s``, plus up to half
    again at random) or the backoff if longer. When the first connection cannot be opened at all (a wrong
    URL, nothing listening) this raises what ``websockets.connect`` raises. Every connection takes a fresh ticket
    from ``speaker`` (a ticket opens one socket). ``tls``: the context that verifies a ``wss://`` server
    (default: the system's CAs). ``ack_log``: where each connection's ready, acks and close are written
    (``palaver.ack_log``), for ``palaver check``."""
    url = f"{ws_url(base_url)}/v1/meetings/{meeting_id}/stream"
    speaker_id = speaker.username
    header: dict[str, object] = {"sample_rate": sample_rate, "encoding": "pcm_s16le", "channels": 1}
    if language is not None:
        header["language"] = language
    progress = _Progress()
    loop = asyncio.get_running_loop()
    started = loop.time()
    step = sample_rate * frame_ms // 1000

    def due(end: int) -> float:  # when the frame ending at pcm[end] leaves, at ``speed``
        return started + end / sample_rate / speed

    def on_ready(first_sample: int, outage: _Outage | None) -> None:
        record = progress.ready(first_sample, outage)
        if record is not None:
            log.warning("stream %s/%s: resumed at sample %d (asked %d) after %d attempts", meeting_id, speaker_id,
                        record.first_sample, record.start_sample, record.attempts)  # fmt: skip

    async def connect(outage: _Outage | None) -> _Ended:
        try:
            ticket = await speaker.ticket(meeting_id)
        except httpx.HTTPError as exc:  # the API is away too (a web restart): like a refused connection
            return _Ended(ABNORMAL_CLOSURE, f"no ticket: {type(exc).__name__}", ready=False)
        logged = ack_log.connection(meeting_id, ids.stream_id(meeting_id, speaker.user_id)) if ack_log else None
        async with websockets.connect(f"{url}?ticket={ticket}", max_size=None, **websocket_options(url, tls)) as ws:
            ended = await _send(ws, header, pcm, progress, step, due, lambda first: on_ready(first, outage),
                                sample_rate, logged)  # fmt: skip
        if logged is not None:
            logged.closed(ended.close_code)
        return ended

    ended = await connect(None)
    while ended.close_code != 1000 and retryable(ended.close_code) and reconnect.attempts > 0:
        outage = _Outage(ended.why, progress.acked)
        log.warning("stream %s/%s: connection lost (%s) with %d samples acknowledged; reconnecting", meeting_id,
                    speaker_id, ended.why, outage.asked)  # fmt: skip
        dropped_at = loop.time()
        while True:
            outage.attempts += 1
            asked = asked_wait_s(ended.close_code, ended.close_reason)
            await asyncio.sleep(reconnect.delay_s(outage.attempts, asked, random.random()))
            try:
                ended = await connect(outage)
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                ended = _Ended(ABNORMAL_CLOSURE, f"could not connect: {exc}", ready=False)
            if ended.ready:
                break  # the stream went on: from here a new outage counts from its own drop
            late = loop.time() - dropped_at >= reconnect.give_up_after_s
            if outage.attempts >= reconnect.attempts or late or not retryable(ended.close_code):
                log.error("stream %s/%s: gave up reconnecting after %d attempts (%s)", meeting_id, speaker_id,
                          outage.attempts, ended.why)  # fmt: skip
                return _result(ended, progress)
    return _result(ended, progress)


async def _send(ws: websockets.ClientConnection, header: dict[str, object], pcm: np.ndarray, progress: _Progress,
                step: int, due: Callable[[int], float], on_ready: Callable[[int], None],
                sample_rate: int, logged: ConnectionLog | None = None) -> _Ended:  # fmt: skip
    """One connection: the header (resuming at ``progress.acked`` when the stream has begun), and once the
    server is ``ready`` the audio from there at its due times, within the server's send-rate limit, then
    ``end``; returns how the connection ended. ``logged``: the connection's lines of an ack log."""
    offset = 0
    if progress.base is not None:
        header = {**header, "start_sample": progress.acked}
        offset = progress.acked - progress.base
    await ws.send(json.dumps(header))
    ready: dict[str, object] = {}
    got_ready = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def read_acks() -> None:
        try:
            async for message in ws:
                if isinstance(message, str):
                    body = json.loads(message)
                    if body.get("type") == "ready":
                        ready.update(body, received_at=loop.time())
                        got_ready.set()
                        on_ready(body["first_sample"])
                        if logged is not None:
                            logged.ready(body["first_sample"])
                    elif body.get("type") == "ack":
                        progress.acked = max(progress.acked, body["samples"])
                        if logged is not None:
                            logged.ack(body["samples"])
        except websockets.ConnectionClosed:
            pass

    reader = asyncio.create_task(read_acks())
    waiting = asyncio.create_task(got_ready.wait())
    await asyncio.wait({reader, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if got_ready.is_set():  # else the server closed before ready (a busy stream, a bad header)
        allowance = _allowance(ready, sample_rate)
        try:
            for at in range(offset, len(pcm), step):
                frame = pcm[at : at + step]
                if allowance is not None:
                    if (wait := allowance.wait_s(len(frame), loop.time())) > 0:
                        await asyncio.sleep(wait)
                    allowance.spend(len(frame), loop.time())
                await ws.send(frame.astype("<i2").tobytes())
                delay = due(at + step) - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(json.dumps({"type": "end"}))
        except websockets.ConnectionClosed:
            pass  # the server closed (bad input) or went away; the close code says which
    await reader
    return _Ended(ws.close_code or ABNORMAL_CLOSURE, ws.close_reason or "", got_ready.is_set())


def _allowance(ready: dict[str, object], sample_rate: int) -> SendAllowance | None:
    """The send-rate limit a ``ready`` message announced, if any (a server before limits sends none)."""
    limits = ready.get("limits")
    if not isinstance(limits, dict) or "max_speed" not in limits or "burst_s" not in limits:
        return None
    return SendAllowance(float(limits["max_speed"]), float(limits["burst_s"]), sample_rate,
                         float(ready["received_at"]))  # type: ignore[arg-type]  # fmt: skip


def _result(ended: _Ended, progress: _Progress) -> StreamResult:
    return StreamResult(ended.close_code, ended.close_reason, progress.acked_pcm, progress.base or 0,
                        tuple(progress.reconnects))  # fmt: skip

"""Acknowledges audio to the client once the broker has it, in order, at most every ``interval_s`` while
later audio is still on its way (at once when the stream has nothing else in flight)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from ingest.protocol import ack_message


class Acker:
    """One per connection. ``track`` is called per frame with the future of the batch that carries it
    (frames of one batch share it: one callback per batch, not per frame); delivery callbacks advance
    ``durable_samples`` in order; one task sends the acks, so a client that reads slowly holds up only
    its own socket."""

    def __init__(self, send_text: Callable[[str], Awaitable[None]], interval_s: float = 0.2):
        self._send_text = send_text
        self._interval_s = interval_s
        self._pending: deque[list] = deque()  # [delivery, samples after its last frame of this stream]
        self._failure: BaseException | None = None
        self._wake: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None  # set by the task once all is acknowledged
        self._acked = 0  # the samples of the last ack sent
        self._last_sent = 0.0
        self.durable_samples = 0
        self._task = asyncio.create_task(self._run())

    def track(self, delivery: asyncio.Future, samples_after: int) -> None:
        """``delivery`` resolves when the frame ending at sample ``samples_after`` is durable."""
        if self._pending and self._pending[-1][0] is delivery:
            self._pending[-1][1] = samples_after  # one more frame of the same batch
            return
        self._pending.append([delivery, samples_after])
        delivery.add_done_callback(self._on_delivery)

    def _on_delivery(self, _: asyncio.Future) -> None:
        """Advance over every leading delivery that is done: durability is a prefix of the stream."""
        while self._pending and self._pending[0][0].done():
            delivery, samples = self._pending.popleft()
            error = None if delivery.cancelled() else delivery.exception()
            if delivery.cancelled() or error is not None:
                self._failure = self._failure or error or asyncio.CancelledError("delivery cancelled")
                break
            self.durable_samples = samples
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while True:
                if self._failure is not None:
                    raise self._failure  # a broker failure ends the stream with 1011 (drain re-raises it)
                samples = self.durable_samples
                now = time.monotonic()
                due = not self._pending or now - self._last_sent >= self._interval_s
                if samples <= self._acked or not due:
                    break
                self._acked, self._last_sent = samples, now
                try:
                    await self._send_text(ack_message(samples))
                except Exception:  # the client is gone (a disconnect, a closed socket): its audio still
                    self._send_text = _no_client  # counts, so drain returns it for stream.stopped
            if not self._pending and self._drained is not None and not self._drained.done():
                self._drained.set_result(None)
            self._wake = loop.create_future()
            await self._wake

    async def drain(self) -> int:
        """Wait until every tracked frame is durable (and acknowledged); return the durable sample count."""
        if self._pending or self._acked < self.durable_samples:
            self._drained = asyncio.get_running_loop().create_future()
            await asyncio.wait({self._drained, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            self._task.result()  # re-raise the delivery failure
        return self.durable_samples

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass


async def _no_client(text: str) -> None:
    """Where acks go once the client is gone."""

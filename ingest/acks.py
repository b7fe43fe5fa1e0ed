"""Acknowledges audio to the client once the broker has it, in order, at most every ``interval_s``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ingest.protocol import ack_message


class Acker:
    def __init__(self, send_text: Callable[[str], Awaitable[None]], interval_s: float = 0.2):
        self._send_text = send_text
        self._interval_s = interval_s
        self._pending: asyncio.Queue[tuple[asyncio.Future, int]] = asyncio.Queue()
        self._task = asyncio.create_task(self._run())
        self.durable_samples = 0
        self._last_sent = 0.0

    def track(self, delivery: asyncio.Future, samples_after: int) -> None:
        """``delivery`` resolves when the frame ending at sample ``samples_after`` is durable."""
        self._pending.put_nowait((delivery, samples_after))

    async def _run(self) -> None:
        while True:
            delivery, samples = await self._pending.get()
            await delivery  # a broker failure raises here and ends the stream with 1011
            self.durable_samples = samples
            self._pending.task_done()
            now = time.monotonic()
            if self._pending.empty() or now - self._last_sent >= self._interval_s:
                self._last_sent = now
                await self._send_text(ack_message(samples))

    async def drain(self) -> int:
        """Wait until every tracked frame is durable (and acknowledged); return the durable sample count."""
        join = asyncio.create_task(self._pending.join())
        await asyncio.wait({join, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            join.cancel()
            self._task.result()  # re-raise the delivery failure
        return self.durable_samples

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except (asyncio.CancelledError, Exception):
            pass

"""Hands every stream's audio frames to the producer as one record batch per partition per linger period.

``producer.send`` costs each frame a trip through aiokafka's accumulator in Python (a partitioner call, a
future, a wait for room, a wake-up of the sender); at 10 frames a second per stream that was most of the
ingest's CPU. Here a frame is one append to an open batch (aiokafka's record builder, in C); every
``linger_s`` one task seals the open batches and sends them with ``producer.send_batch``. All frames of a
batch share one delivery future, set once the broker has the batch (acks=all, idempotent producer), so
acks still come only after the broker has the audio.

A stream's frames keep their order: they all go to the partition its ``stream.started`` went to (the
producer's own choice for the stream's key), batches of one partition are sent in the order they were
opened, and the idempotent producer keeps a partition's batches in order on the broker.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger(__name__)

LINGER_S = 0.010  # how long a batch stays open: more frames per batch, at most this much later an ack
# The producer's batch size for the process that runs the ingest (stack/web.py passes it as aiokafka's
# max_batch_size): 20 frames of 100 ms at 16 kHz, so a partition's frames of one linger (five at 300
# streams on 6 partitions) fit one batch; aiokafka's default (16 KiB) holds four, so they went as two.
# `palaver bench ingest`: about 4 us of CPU a frame less at 300 streams (bench/README.md).
BATCH_BYTES = 64 << 10
# Full batches waiting for the flusher (it waits on the producer, which waits on the broker) beyond which
# the sockets stop reading (``room``): about 1 MiB of audio, then TCP pushes back on the clients, as
# ``producer.send`` did per frame.
MAX_WAITING_BATCHES = (1 << 20) // BATCH_BYTES


class _OpenBatch:
    __slots__ = ("builder", "delivered")

    def __init__(self, builder: Any, delivered: asyncio.Future[None]):
        self.builder = builder
        self.delivered = delivered  # set once the broker has the batch; failed when it does not


class FrameBatcher:
    """One per ingest process (``IngestContext.batcher``); ``add`` is called from the sockets' handlers,
    on the event loop that runs them."""

    def __init__(self, producer: Any, topic: str, linger_s: float = LINGER_S,
                 max_waiting: int = MAX_WAITING_BATCHES):  # fmt: skip
        self._producer = producer
        self._topic = topic
        self._linger_s = linger_s
        self._max_waiting = max_waiting
        self._room: asyncio.Future[None] | None = None
        self.backlogged = False  # True: call ``room`` before adding more
        self._open: dict[int, _OpenBatch] = {}
        self._sealed: list[tuple[int, _OpenBatch]] = []  # full before their linger ended: sent first
        self._flusher: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None

    def add(self, partition: int, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> asyncio.Future[None]:
        """Put one frame into ``partition``'s open batch; return the future its delivery sets."""
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = self._new_batch()
        if batch.builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
            self._sealed.append((partition, batch))  # full: sent with the next flush, in order
            self.backlogged = len(self._sealed) >= self._max_waiting
            batch = self._open[partition] = self._new_batch()
            if batch.builder.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise ValueError(f"a frame of {len(value)} bytes does not fit in an empty record batch")
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        elif self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._run(), name="ingest frame batcher")
        return batch.delivered

    async def room(self) -> None:
        """Return once the flusher has taken the waiting batches (at once when it has)."""
        if self.backlogged:
            if self._room is None or self._room.done():
                self._room = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._room)

    def _new_batch(self) -> _OpenBatch:
        # The producer's own batch size (max_batch_size: BATCH_BYTES in the web process) and compression
        # (none: PCM hardly compresses); a fuller partition gets more batches within one linger.
        return _OpenBatch(self._producer.create_batch(), asyncio.get_running_loop().create_future())

    async def _run(self) -> None:
        """Every ``linger_s`` while frames come: send what is open; sleeps on a future while none do."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._open and not self._sealed:
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
            await asyncio.sleep(self._linger_s)
            due = self._sealed + list(self._open.items())
            self._sealed, self._open = [], {}
            self.backlogged = False
            if self._room is not None and not self._room.done():
                self._room.set_result(None)
            await self._send(due)

    async def _send(self, due: Iterable[tuple[int, _OpenBatch]]) -> None:
        for partition, batch in due:
            # Closed, the batch is complete: aiokafka sends it without lingering on it again (its linger_ms
            # counts from send_batch) and appends no other record to it. (The in-memory test producer's
            # batches have no close.)
            close = getattr(batch.builder, "close", None)
            if close is not None:
                close()
            try:
                delivery = await self._producer.send_batch(batch.builder, self._topic, partition=partition)
            except Exception as exc:  # the producer refused it (closed, timed out waiting for room)
                _fail(batch.delivered, exc)
                continue
            delivery.add_done_callback(lambda done, into=batch.delivered: _settle(into, done))


def _settle(into: asyncio.Future[None], done: asyncio.Future[Any]) -> None:
    if into.done():
        return
    if done.cancelled():
        into.set_exception(asyncio.CancelledError("the producer dropped the batch"))
    elif done.exception() is not None:
        into.set_exception(done.exception())  # type: ignore[arg-type]
    else:
        into.set_result(None)


def _fail(into: asyncio.Future[None], exc: BaseException) -> None:
    if not into.done():
        into.set_exception(exc)

"""The per-engine part of the STT worker, behind one small interface, and the outbox it writes to.

The worker (``pipeline.py``) owns the Kafka edges: consuming, rebalances, resume points in commit metadata,
the DLQ, lifecycle events, publish rounds and commits. A ``Transcriber`` owns the streams' audio and turns
it into events: ``local_transcriber.LocalTranscriber`` (Silero segmentation and batched Whisper decoding)
or ``cloud_transcriber.CloudTranscriber`` (one streaming session per stream on a cloud engine).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from aiokafka.structs import ConsumerRecord

from palaver.events import AudioFrameV1
from stt_workers.engine import Transcription
from stt_workers.processor import StreamInfo
from stt_workers.scheduler import DecodeRequest, Ready


@dataclass
class Decode:
    """A decode request in the outbox and how to turn its result into an event (None: nothing)."""

    request: DecodeRequest
    publish: Callable[[Transcription | None], tuple[str, bytes] | None]
    superseded: bool = False  # a newer partial of the same stream was queued before this one's round


OutboxItem = Decode | tuple[str, bytes]  # a decode to run, or (meeting id, encoded event)
Queued = tuple[str, OutboxItem]  # (stream id, item): a stream's items are published in order


class Outbox:
    """Output waiting for the next publish round, each item with its stream, in the order it arose (each
    stream's events are published in that order). The worker takes it, with the offsets that are safe once
    it is published."""

    def __init__(self) -> None:
        self._items: list[Queued] = []
        self._partials: dict[str, Decode] = {}  # stream -> its partial request waiting here
        self._finals = 0  # finals waiting here, as events (decoded already)

    def emit(self, stream_id: str, meeting_id: str, value: bytes, final: bool = False) -> None:
        """Queue an event; ``final``: a transcript final (its round should start soon)."""
        self._finals += final
        self._items.append((stream_id, (meeting_id, value)))

    def decode(self, stream_id: str, item: Decode, partial: bool = False) -> None:
        """Queue a decode; a partial makes the stream's partial still waiting here stale."""
        if partial:
            queued = self._partials.get(stream_id)
            if queued is not None:
                queued.superseded = True
            self._partials[stream_id] = item
        self._items.append((stream_id, item))

    def keep(self, stream_id: str, item: Decode) -> None:
        """The stream's waiting partial request ``item`` is now its final's decode: never superseded."""
        if self._partials.get(stream_id) is item:
            del self._partials[stream_id]

    def drop_partial(self, stream_id: str) -> None:
        """The stream's open utterance ended (its final is queued): its waiting partial would be decoded
        only to be thrown away."""
        queued = self._partials.pop(stream_id, None)
        if queued is not None:
            queued.superseded = True

    def take(self) -> list[Queued]:
        items = [(s, i) for s, i in self._items if not (isinstance(i, Decode) and i.superseded)]
        self._items = []
        self._partials.clear()
        self._finals = 0
        return items

    @property
    def final_waiting(self) -> bool:
        """A final waits for the next round (the running round makes way for it): a final event, or the
        decode of an utterance that has ended. An eager decode (final-kind, but still the stream's partial
        request: its utterance may go on) does not count until ``keep`` makes it the final's: under
        overload, decodes that may be thrown away must not overtake anything."""
        speculative = {id(item) for item in self._partials.values()}
        return self._finals > 0 or any(
            isinstance(item, Decode) and item.request.kind == "final" and not item.superseded
            and id(item) not in speculative
            for _, item in self._items
        )  # fmt: skip

    @property
    def decode_waiting(self) -> bool:
        """A decode (final or partial) waits for the next round."""
        return any(isinstance(item, Decode) and not item.superseded for _, item in self._items)

    def __bool__(self) -> bool:
        return bool(self._items)


@dataclass(frozen=True)
class ResumePoint:
    """Where a restart resumes one stream: ``sample`` (into the commit metadata) and the offset of the
    earliest record still needed for it (None: none), which holds its partition's commit back."""

    stream_id: str
    partition: int
    sample: int
    needed_offset: int | None


class Transcriber(Protocol):
    """Holds the streams of the partitions a worker owns and turns their audio into events in ``outbox``.

    Called by the worker under its lock (never two calls at once, never during a rebalance callback);
    it may also add to ``outbox`` from its own tasks, as results come. Must not commit or produce."""

    name: str  # the engine's name and model: a run is "name:model"
    model: str
    outbox: Outbox

    def holds(self, stream_id: str) -> bool: ...

    async def open(self, info: StreamInfo, partition: int, first_sample: int) -> None:
        """Hold the stream from ``first_sample`` on (nothing when it is held already)."""
        ...

    async def audio(self, frame: AudioFrameV1, record: ConsumerRecord) -> None:
        """A frame of a held stream."""
        ...

    async def stop(self, stream_id: str, offset: int, last: tuple[str, bytes]) -> None:
        """The stream ended at record ``offset``: its remaining finals, then ``last`` (its ``stream.stopped``
        event), go to the outbox, now or later; meanwhile its resume point holds the commit before ``offset``."""
        ...

    def after_batch(self, touched: set[str]) -> None:
        """Once per consumer batch, for the streams that got audio in it (partials, progress)."""
        ...

    def resume_points(self) -> Iterator[ResumePoint]: ...

    async def release(self, partitions: set[int] | None) -> None:
        """Before a revocation (or shutdown: None, every partition) is drained and committed: produce no more
        output for these partitions' streams; their resume points stay until ``forget``."""
        ...

    def forget(self, partitions: set[int]) -> None: ...

    async def decode(self, requests: list[DecodeRequest], ready: Ready) -> None:
        """Run the outbox's decode requests of one round (batched), telling ``ready`` each result as soon
        as it is known."""
        ...

    def idle_lane(self) -> bool:
        """A decode lane is idle and no batch of a running round waits for one: decodes queued now can
        start at once, in a round of their own."""
        ...

    def check(self) -> None:
        """Raise what failed in the transcriber's own tasks (the worker then stops)."""
        ...

    def speaking(self) -> int:
        """How many streams are in speech (a metric)."""
        ...

    async def close(self) -> None: ...

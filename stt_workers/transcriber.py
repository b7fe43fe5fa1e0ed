"""The per-engine part of the STT worker, behind one small interface, and the plain values it hands over.

The worker (``pipeline.py``) owns the Kafka edges: consuming, rebalances, resume points in commit metadata,
the DLQ, lifecycle events, publish rounds and commits. A ``Transcriber`` owns the streams' audio and turns
it into output: ``local_transcriber.LocalTranscriber`` (Silero segmentation and batched Whisper decoding)
or ``cloud_transcriber.CloudTranscriber`` (one streaming session per stream on a cloud engine).

The flow is one way: the worker calls the transcriber, never the reverse. The transcriber keeps its output
in its own ``OutputQueue`` until the worker asks for it: ``pending`` says what waits (plain flags), ``take``
hands it over (a list of plain items: encoded events and decode requests). The worker begins the decodes
it took (``decode``: results as each batch ends), and turns each result into its event by asking
``event``, in the stream's order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from aiokafka.structs import ConsumerRecord

from palaver.events import AudioFrameV1
from stt_workers.engine import Transcription
from stt_workers.processor import StreamInfo
from stt_workers.scheduler import DecodeRequest, Told


class KeyedEvent(NamedTuple):
    """An encoded event, ready to produce, and its key (the meeting id)."""

    meeting_id: str
    value: bytes


@dataclass(eq=False)  # compared and hashed by identity: each request is one decode
class Decode:
    """A decode request for the worker's round. ``job`` is what the transcriber that asked for it needs to
    turn its result into an event (``Transcriber.event``); the worker only hands it back."""

    request: DecodeRequest
    job: object = None
    superseded: bool = False  # the queue's mark: a newer partial of the same stream was queued after it


OutputItem = Decode | KeyedEvent
Queued = tuple[str, OutputItem]  # (stream id, item): a stream's items are published in order


@dataclass(frozen=True)
class Pending:
    """What waits in a transcriber's queue for the worker's next round."""

    output: bool = False  # anything: events or decodes
    final: bool = False  # a final: its round should start at once, overtaking a running one
    decode: bool = False  # a decode (final or partial)


class OutputQueue:
    """One transcriber's output waiting for the worker's next round, each item with its stream, in the
    order it arose (each stream's items are published in that order). Private to its transcriber, which
    hands over its contents with ``take``."""

    def __init__(self) -> None:
        self._items: list[Queued] = []
        self._partials: dict[str, Decode] = {}  # stream -> its partial request waiting here
        self._finals = 0  # finals waiting here, as events (decoded already)

    def emit(self, stream_id: str, event: KeyedEvent, final: bool = False) -> None:
        """Queue an event; ``final``: a transcript final (its round should start soon)."""
        self._finals += final
        self._items.append((stream_id, event))

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
        """Everything waiting, superseded partials left out; the queue is empty after."""
        items = [(s, i) for s, i in self._items if not (isinstance(i, Decode) and i.superseded)]
        self._items = []
        self._partials.clear()
        self._finals = 0
        return items

    def pending(self) -> Pending:
        """What waits. A final waits (``Pending.final``) as an event, or as the decode of an utterance that
        has ended. An eager decode (final-kind, but still the stream's partial request: its utterance may
        go on) does not count until ``keep`` makes it the final's: under overload, decodes that may be
        thrown away must not overtake anything."""
        speculative = {id(item) for item in self._partials.values()}
        decodes = [item for _, item in self._items if isinstance(item, Decode) and not item.superseded]
        final = self._finals > 0 or any(
            item.request.kind == "final" and id(item) not in speculative for item in decodes
        )
        return Pending(output=bool(self._items), final=final, decode=bool(decodes))


@dataclass(frozen=True)
class ResumePoint:
    """Where a restart resumes one stream: ``sample`` (into the commit metadata) and the offset of the
    earliest record still needed for it (None: none), which holds its partition's commit back."""

    stream_id: str
    partition: int
    sample: int
    needed_offset: int | None


class DecodeResults(Protocol):
    """A round's decoding, begun (``scheduler.Decoding``): (index into the decodes, result) as each is
    known; ``aclose`` stops it early."""

    def __aiter__(self) -> AsyncIterator[Told]: ...

    async def aclose(self) -> None: ...


class Transcriber(Protocol):
    """Holds the streams of the partitions a worker owns and turns their audio into output, which it keeps
    until the worker takes it.

    Called by the worker under its lock (never two calls at once, never during a rebalance callback);
    it may also queue output from its own tasks, as results come. It never calls the worker, and must not
    commit or produce."""

    name: str  # the engine's name and model
    model: str
    run: str  # the run its events belong to: "name:model" for the live pass (``palaver.runs``)

    def holds(self, stream_id: str) -> bool: ...

    async def open(self, info: StreamInfo, partition: int, first_sample: int) -> None:
        """Hold the stream from ``first_sample`` on (nothing when it is held already)."""
        ...

    async def audio(self, frame: AudioFrameV1, record: ConsumerRecord) -> None:
        """A frame of a held stream."""
        ...

    def forward(self, stream_id: str, event: KeyedEvent) -> None:
        """Queue an event of the worker's (a lifecycle event) after the stream's output so far."""
        ...

    def set_vocabulary(self, meeting_id: str, terms: list[str]) -> None:
        """The meeting's vocabulary terms (``stt_workers.vocabulary_follower.meeting_terms``) for the decodes
        of its streams from now on ([]: none); an engine that takes no prompt ignores them."""
        ...

    async def stop(self, stream_id: str, offset: int, last: KeyedEvent) -> None:
        """The stream ended at record ``offset``: its remaining finals, then ``last`` (its ``stream.stopped``
        event), are queued, now or later; meanwhile its resume point holds the commit before ``offset``."""
        ...

    def after_batch(self, touched: set[str]) -> None:
        """Once per consumer batch, for the streams that got audio in it (partials, progress)."""
        ...

    def pending(self) -> Pending:
        """What waits for the worker's next round."""
        ...

    def take(self) -> list[Queued]:
        """The output queued so far, in order; the queue is empty after."""
        ...

    def decode(self, decodes: list[Decode]) -> DecodeResults:
        """Begin decoding ``decodes`` (taken for one round) together, batched; the batches are planned
        before this returns (``idle_lane`` counts them). Results come as each batch ends."""
        ...

    def event(self, decode: Decode, result: Transcription | None) -> KeyedEvent | None:
        """The event a decode's result makes (None: nothing to publish: silence, or a partial dropped as
        stale or outdated). Called once per decode, in its stream's order, when the stream's events before
        it are published: a stream's partials build on each other."""
        ...

    def idle_lane(self) -> bool:
        """A decode lane is idle and no batch of a running round waits for one: decodes queued now can
        start at once, in a round of their own."""
        ...

    def resume_points(self) -> Iterator[ResumePoint]: ...

    async def release(self, partitions: set[int] | None) -> None:
        """Before a revocation (or shutdown: None, every partition) is drained and committed: queue no more
        output for these partitions' streams; their resume points stay until ``forget``."""
        ...

    def forget(self, partitions: set[int]) -> None: ...

    def check(self) -> None:
        """Raise what failed in the transcriber's own tasks (the worker then stops)."""
        ...

    def speaking(self) -> int:
        """How many streams are in speech (a metric)."""
        ...

    async def close(self) -> None: ...

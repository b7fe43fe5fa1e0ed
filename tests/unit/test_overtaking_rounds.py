"""A final that comes while a publish round runs starts a round of its own at once, and so do decodes
queued while a decode lane idles: each stream's events still go out in order and the rounds commit in
order. The worker runs on the real consumer runner over the in-memory broker, with a transcriber whose
decodes the test releases one by one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import numpy as np

from palaver.settings import Settings
from palaver.streams.memory_broker import MemoryBroker
from stt_workers.engine import Transcription
from stt_workers.pipeline import RUNNER, SttWorker
from stt_workers.scheduler import DecodeRequest, Told
from stt_workers.transcriber import Decode, KeyedEvent, OutputQueue, Pending, Queued, ResumePoint
from tests.runner_harness import Running, running, until


class _Transcriber:
    """Output the test queues (``queue``); decodes each round's requests when the test lets them go
    (``go[text]``), in any order."""

    name, model, run = "fake", "m", "fake:m"

    def __init__(self) -> None:
        self.queue = OutputQueue()
        self.go: dict[str, asyncio.Event] = {}
        self.idle = False  # what ``idle_lane`` says
        self.batches = 0  # consumer batches seen (the runner polls in a loop)
        self.begun: list[list[str]] = []  # each round's decodes, when the worker began them

    def idle_lane(self) -> bool:
        return self.idle

    def pending(self) -> Pending:
        return self.queue.pending()

    def take(self) -> list[Queued]:
        return self.queue.take()

    def decode(self, decodes: list[Decode]) -> AsyncIterator[Told]:
        self.begun.append([d.request.language for d in decodes])
        return self._released(decodes)

    async def _released(self, decodes: list[Decode]) -> AsyncIterator[Told]:
        async def one(index: int, text: str) -> Told:
            await self.go.setdefault(text, asyncio.Event()).wait()
            return index, _result(text)

        # the test names each request by its "language"
        waits = [asyncio.ensure_future(one(i, d.request.language)) for i, d in enumerate(decodes)]
        try:
            for done in asyncio.as_completed(waits):
                yield await done
        finally:
            for wait in waits:
                wait.cancel()

    def event(self, decode: Decode, result: Transcription | None) -> KeyedEvent | None:
        return KeyedEvent("m1", result.text.encode()) if result is not None else None

    def resume_points(self) -> Iterator[ResumePoint]:
        return iter(())

    def check(self) -> None:
        pass

    def after_batch(self, touched: set[str]) -> None:
        self.batches += 1

    def speaking(self) -> int:
        return 0

    async def release(self, partitions: set[int] | None) -> None:
        pass

    def forget(self, partitions: set[int]) -> None:
        pass

    async def close(self) -> None:
        pass


def _result(text: str) -> Transcription:
    return Transcription(text=text, words=(), confidence=1.0)


def _decode(text: str, kind: str) -> Decode:
    return Decode(DecodeRequest(kind, np.zeros(1600, np.float32), language=text))  # type: ignore[arg-type]


def _event(value: bytes) -> KeyedEvent:
    return KeyedEvent("m1", value)


class _Scene:
    def __init__(self, t: _Transcriber, worker: SttWorker, run: Running):
        self.t, self.worker, self._run = t, worker, run

    @property
    def sent(self) -> list[bytes]:
        return self._run.producer.sent["transcripts"]

    @property
    def commits(self) -> list[int]:
        return [offsets[tp][0] for offsets in self._run.consumer.commits for tp in offsets]

    async def until(self, holds: Callable[[], bool], what: str) -> None:
        await until(holds, what, self._run.task)

    async def polls(self, n: int = 3) -> None:
        """Let the runner poll ``n`` more times (a round it would start has started by then)."""
        seen = self.t.batches
        await self.until(lambda: self.t.batches >= seen + n, f"{n} more polls")

    def release(self, *texts: str) -> None:
        for text in texts:
            self.t.go.setdefault(text, asyncio.Event()).set()


@asynccontextmanager
async def _scene() -> AsyncIterator[_Scene]:
    broker = MemoryBroker(partitions=1)
    t = _Transcriber()
    producer = broker.producer()
    worker = SttWorker(Settings(), t, producer)  # type: ignore[arg-type]
    async with running(broker, Settings(), RUNNER, worker, producer) as run:
        scene = _Scene(t, worker, run)
        await scene.until(lambda: bool(run.consumers) and t.batches > 0, "the runner polls")
        yield scene


async def test_a_final_overtakes_the_running_round_in_order() -> None:
    async with _scene() as s:
        t, worker = s.t, s.worker
        # Round 1: a partial of stream a and one of stream b, still decoding.
        t.queue.decode("a", _decode("a-partial", "partial"), partial=True)
        t.queue.decode("b", _decode("b-partial", "partial"), partial=True)
        worker._processed[0] = 10
        await s.until(lambda: not t.pending().output, "round 1 starts")
        # No final waits: the next batch's output waits for the round.
        t.queue.emit("b", _event(b"b-progress"))
        await s.polls()
        assert t.pending().output, "no round started: nothing overtakes without a final"
        # Stream b's final comes: round 2 starts at once.
        t.queue.decode("b", _decode("b-final", "final"))
        t.queue.decode("c", _decode("c-final", "final"))
        worker._processed[0] = 20
        await s.until(lambda: not t.pending().output, "a waiting final starts its round while the other one runs")

        s.release("c-final", "b-final")
        await s.until(lambda: bool(s.sent), "c-final published")
        await s.polls()
        assert s.sent == [b"c-final"], "c waits for nothing; b's final waits for b's partial"
        assert s.commits == [], "round 2 commits after round 1"
        s.release("b-partial", "a-partial")
        await s.until(lambda: len(s.commits) == 2, "both rounds commit")

    assert s.sent.index(b"b-partial") < s.sent.index(b"b-progress") < s.sent.index(b"b-final")
    assert sorted(s.sent) == sorted([b"a-partial", b"b-partial", b"b-progress", b"b-final", b"c-final"])
    assert s.commits[:2] == [10, 20]


async def test_queued_decodes_take_an_idle_lane_without_waiting_for_the_round() -> None:
    async with _scene() as s:
        t, worker = s.t, s.worker
        t.queue.decode("a", _decode("a-partial-1", "partial"), partial=True)
        worker._processed[0] = 10
        await s.until(lambda: not t.pending().output, "round 1 starts")
        await s.polls()  # round 1 has planned its batches
        t.queue.decode("b", _decode("b-partial", "partial"), partial=True)
        await s.polls()
        assert t.pending().output, "no lane idles: the decodes wait for the round"
        # A lane idles (the round's last batch runs on the other one): the queued decodes start.
        t.queue.emit("a", _event(b"a-progress"))
        t.queue.decode("a", _decode("a-partial-2", "partial"), partial=True)
        worker._processed[0] = 20
        t.idle = True
        await s.until(lambda: not t.pending().output, "a new round takes the idle lane")
        t.idle = False

        s.release("a-partial-2", "b-partial")
        await s.until(lambda: bool(s.sent), "b-partial published")
        await s.polls()
        assert s.sent == [b"b-partial"], "a's newer partial waits for a's events of the first round"
        s.release("a-partial-1")
        await s.until(lambda: len(s.commits) == 2, "both rounds commit")

    assert s.sent == [b"b-partial", b"a-partial-1", b"a-progress", b"a-partial-2"]
    assert s.commits[:2] == [10, 20]


async def test_a_round_begins_its_decodes_when_it_starts() -> None:
    """The round's decodes are handed to the transcriber as the round starts, before the runner's loop
    goes on (the scheduler plans their batches then): an idle lane a later round sees is never one this
    round is about to take."""
    t = _Transcriber()
    worker = SttWorker(Settings(), t, MemoryBroker().producer())  # type: ignore[arg-type]
    t.queue.emit("a", _event(b"a-started"))
    t.queue.decode("a", _decode("a-partial", "partial"), partial=True)
    t.queue.decode("b", _decode("b-final", "final"))
    checkpoint = await worker.snapshot({}, final=False)
    assert checkpoint is not None and t.begun == [["a-partial", "b-final"]]
    assert not t.pending().output
    # A round of events alone decodes nothing.
    t.queue.emit("a", _event(b"a-progress"))
    await _release_and_wait(t, checkpoint, "a-partial", "b-final")
    checkpoint = await worker.snapshot({}, final=False)
    assert checkpoint is not None and t.begun == [["a-partial", "b-final"]]
    await _release_and_wait(t, checkpoint)


async def _release_and_wait(t: _Transcriber, checkpoint: object, *texts: str) -> None:
    for text in texts:
        t.go.setdefault(text, asyncio.Event()).set()
    await asyncio.wait_for(checkpoint.persist(), 5)  # type: ignore[attr-defined]


def test_events_alone_are_no_decode_waiting() -> None:
    queue = OutputQueue()
    queue.emit("a", _event(b"a-progress"))
    assert queue.pending().output and not queue.pending().decode
    queue.decode("a", _decode("a-partial", "partial"), partial=True)
    assert queue.pending().decode
    queue.drop_partial("a")
    assert not queue.pending().decode, "a superseded partial is not decoded"

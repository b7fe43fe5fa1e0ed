"""A final that comes while a publish round runs starts a round of its own at once, and so do decodes
queued while a decode lane idles (with a fake transcriber, producer and consumer): each stream's events
still go out in order and the rounds commit in order."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
from aiokafka import TopicPartition

from palaver.settings import Settings
from stt_workers.engine import Transcription
from stt_workers.pipeline import SttWorker
from stt_workers.scheduler import DecodeRequest, Ready
from stt_workers.transcriber import Decode, Outbox, ResumePoint


class _Transcriber:
    """Decodes each round's requests when the test releases them (``release[text]``), in any order."""

    name, model = "fake", "m"

    def __init__(self) -> None:
        self.outbox = Outbox()
        self.release: dict[str, asyncio.Event] = {}
        self.idle = False  # what ``idle_lane`` says

    def idle_lane(self) -> bool:
        return self.idle

    async def decode(self, requests: list[DecodeRequest], ready: Ready) -> None:
        async def one(index: int, request: DecodeRequest) -> None:
            text = request.language  # the test names each request by its "language"
            await self.release.setdefault(text, asyncio.Event()).wait()
            ready(index, _result(text))

        await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))

    def resume_points(self) -> Iterator[ResumePoint]:
        return iter(())


def _result(text: str) -> Transcription:
    return Transcription(text=text, words=(), confidence=1.0)


class _Producer:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[None]:
        self.sent.append(value)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class _Consumer:
    def __init__(self, topic: str) -> None:
        self.tp = TopicPartition(topic, 0)
        self.commits: list[int] = []

    def assignment(self) -> set[TopicPartition]:
        return {self.tp}

    async def commit(self, offsets: dict[TopicPartition, tuple[int, str]]) -> None:
        self.commits.append(offsets[self.tp][0])


def _decode(text: str, kind: str) -> Decode:
    request = DecodeRequest(kind, np.zeros(1600, np.float32), language=text)  # type: ignore[arg-type]
    return Decode(request, lambda result: ("m1", result.text.encode()) if result else None)


def _worker() -> tuple[_Transcriber, SttWorker, _Producer, _Consumer]:
    t = _Transcriber()
    worker = SttWorker(Settings(), t)  # type: ignore[arg-type]
    worker._producer = producer = _Producer()  # type: ignore[assignment]
    return t, worker, producer, _Consumer(worker._audio_topic)


def test_a_final_overtakes_the_running_round_in_order() -> None:
    async def scenario() -> tuple[list[bytes], list[int]]:
        t, worker, producer, consumer = _worker()

        # Round 1: a partial of stream a and one of stream b, still decoding.
        t.outbox.decode("a", _decode("a-partial", "partial"), partial=True)
        t.outbox.decode("b", _decode("b-partial", "partial"), partial=True)
        worker._processed[0] = 10
        worker._start_round(consumer)  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        # No final waits: the next batch's output waits for the round.
        t.outbox.emit("b", "m1", b"b-progress")
        worker._start_round(consumer)  # type: ignore[arg-type]
        assert t.outbox, "no round started: nothing overtakes without a final"
        # Stream b's final comes: round 2 starts at once.
        t.outbox.decode("b", _decode("b-final", "final"))
        t.outbox.decode("c", _decode("c-final", "final"))
        worker._processed[0] = 20
        worker._start_round(consumer)  # type: ignore[arg-type]
        assert not t.outbox, "a waiting final starts its round while the other one runs"

        for text in ("c-final", "b-final"):
            t.release.setdefault(text, asyncio.Event()).set()
        await asyncio.sleep(0.01)
        assert producer.sent == [b"c-final"], "c waits for nothing; b's final waits for b's partial"
        assert consumer.commits == [], "round 2 commits after round 1"
        for text in ("b-partial", "a-partial"):
            t.release.setdefault(text, asyncio.Event()).set()
        await worker._finish_round()
        return producer.sent, consumer.commits

    sent, commits = asyncio.run(scenario())
    assert sent.index(b"b-partial") < sent.index(b"b-progress") < sent.index(b"b-final")
    assert sorted(sent) == sorted([b"a-partial", b"b-partial", b"b-progress", b"b-final", b"c-final"])
    assert commits == [10, 20]


def test_queued_decodes_take_an_idle_lane_without_waiting_for_the_round() -> None:
    async def scenario() -> tuple[list[bytes], list[int]]:
        t, worker, producer, consumer = _worker()

        t.outbox.decode("a", _decode("a-partial-1", "partial"), partial=True)
        worker._processed[0] = 10
        worker._start_round(consumer)  # type: ignore[arg-type]
        t.idle = True
        t.outbox.decode("b", _decode("b-partial", "partial"), partial=True)
        worker._start_round(consumer)  # type: ignore[arg-type]
        assert t.outbox, "the running round has not planned its batches yet: they may take the idle lane"
        await asyncio.sleep(0.01)
        t.idle = False
        worker._start_round(consumer)  # type: ignore[arg-type]
        assert t.outbox, "no lane idles: the decodes wait for the round"
        # A lane idles (the round's last batch runs on the other one): the queued decodes start.
        t.outbox.emit("a", "m1", b"a-progress")
        t.outbox.decode("a", _decode("a-partial-2", "partial"), partial=True)
        t.idle = True
        worker._processed[0] = 20
        worker._start_round(consumer)  # type: ignore[arg-type]
        assert not t.outbox, "a new round takes the idle lane"

        t.release.setdefault("a-partial-2", asyncio.Event()).set()
        t.release.setdefault("b-partial", asyncio.Event()).set()
        await asyncio.sleep(0.01)
        assert producer.sent == [b"b-partial"], "a's newer partial waits for a's events of the first round"
        t.release.setdefault("a-partial-1", asyncio.Event()).set()
        await worker._finish_round()
        return producer.sent, consumer.commits

    sent, commits = asyncio.run(scenario())
    assert sent == [b"b-partial", b"a-partial-1", b"a-progress", b"a-partial-2"]
    assert commits == [10, 20]


def test_events_alone_are_no_decode_waiting() -> None:
    outbox = Outbox()
    outbox.emit("a", "m1", b"a-progress")
    assert outbox and not outbox.decode_waiting
    outbox.decode("a", _decode("a-partial", "partial"), partial=True)
    assert outbox.decode_waiting
    outbox.drop_partial("a")
    assert not outbox.decode_waiting, "a superseded partial is not decoded"

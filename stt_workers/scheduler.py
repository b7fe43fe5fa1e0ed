"""The decode scheduler shared by all the streams a worker owns.

Each consumer batch yields decode requests: finals (an utterance ended) and at most one partial per
speaking stream (its open utterance, newest audio only). The scheduler buckets them by language, audio
length and meeting vocabulary (one Whisper call decodes one language, since its prompt names it, and puts
one vocabulary before every clip's previous text) and runs one batched call per bucket
(``BatchedWhisper.decode``, encoder input trimmed to the bucket), off the event loop, on
``PALAVER_STT_DECODE_LANES`` threads at once (2 by default). Finals go first.

Lanes: a greedy decode of a small batch is a chain of tiny decoder steps that a second intra-op thread
barely speeds up (measured on 2 cores: a batch of one decodes as fast on 1 thread as on 2), so two lanes
of one thread each decode about a third more than one lane of two threads (bench/README.md). Partials
can be kept off the last ``PALAVER_STT_FINAL_LANES`` lanes (0 by default; partials keep at least one),
so that a final that comes while partials decode starts at once on a lane kept for it.

A round is begun by ``start``, which plans its batches at once and returns its results as each batch
ends (``Decoding``, an async iterator); the caller publishes them as they come. Nothing here calls back.

Partials are dropped, not queued, once the round has run past ``partial_deadline_s``
(``PALAVER_STT_PARTIAL_DEADLINE_MS``, 500 ms), or while a final waits for the next round
(``final_waiting``, set by the scheduler's owner), or when a newer round has begun (the worker starts one
at once for a final that comes while a round runs, and for any decode once a lane idles, ``idle_lane``;
the rounds share the lanes): under overload lag stays bounded instead of growing, a final waits for at
most the first lane's batch to end, and the dropped streams ask again at once with fresher audio. Only
finals get word timings: partials skip Whisper's alignment pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Literal

import numpy as np

from palaver.metrics import STT_BATCH_SIZE, STT_DECODE_SECONDS, STT_DROPPED_PARTIALS, STT_REAL_TIME_FACTOR
from stt_workers.batched_whisper import bucket_for
from stt_workers.engine import Transcription

Kind = Literal["final", "partial"]
# (clips, language, with_words per clip, prompt per clip, vocabulary) -> one transcription per clip; word
# timings only where asked for; a prompt is the text said before the clip ("" for none), the vocabulary the
# words of the clips' meeting, first in every prompt ("" for none; ``BatchedWhisper.decode``)
BatchDecoder = Callable[[list[np.ndarray], str, list[bool], list[str], str], list[Transcription]]
Told = tuple[int, "Transcription | None"]  # (request index, its result; None: a partial dropped as stale)
# Most audio (clips x bucket length) one partial batch holds by default: ~0.4 s on 2 cores
# (PALAVER_STT_PARTIAL_BATCH_AUDIO_S; a GPU's default is far larger).
PARTIAL_BATCH_AUDIO_S = 20.0


@dataclass(frozen=True)
class DecodeRequest:
    kind: Kind
    audio: np.ndarray  # float32, 16 kHz
    sample_rate: int = 16000
    language: str = "en"  # what to decode it as: requests of different languages never share a batch
    prompt: str = ""  # the stream's text before this audio, the decoder's previous text ("" for none)
    # The words of the stream's meeting (stt_workers/vocabulary.py), before the prompt ("" for none):
    # requests with different vocabularies never share a batch
    vocabulary: str = ""

    @property
    def bucket(self) -> int:
        return bucket_for(min(len(self.audio) / self.sample_rate, 30.0))


def plan_batches(requests: Sequence[DecodeRequest], max_batch: int,
                 partial_audio_s: float = PARTIAL_BATCH_AUDIO_S) -> list[list[int]]:  # fmt: skip
    """Indexes of ``requests`` grouped into batches of one kind, language, bucket and vocabulary, at most
    ``max_batch`` each, and a partial batch at most ``partial_audio_s`` of bucketed audio: finals
    first, then partials, each shortest bucket first (cheapest first; measured at 8 speakers, it also gave
    a lower final-lag p95 than oldest first). Partials never ride along with finals: on a CPU a batch of
    eight costs about three times a batch of one, so a partial in a final's batch delays that final by
    more than it saves. A vocabulary is kept whole in every prompt of its batch (``BatchedWhisper.decode``),
    so clips of meetings with different vocabularies decode apart."""
    finals: dict[tuple[int, str, str], list[int]] = {}
    partials: dict[tuple[int, str, str], list[int]] = {}
    for index, request in enumerate(requests):
        group = finals if request.kind == "final" else partials
        group.setdefault((request.bucket, request.language, request.vocabulary), []).append(index)
    batches = [chunk for key in sorted(finals) for chunk in _chunks(finals[key], max_batch)]
    for key in sorted(partials):
        # A partial batch holds at most ``partial_audio_s`` of audio: a final that comes while it runs
        # waits for it, so it must stay short (at 20 s on a CPU: 2 clips of 10 s, 4 of 5 s, 8 of 2.5 s).
        size = max(1, min(max_batch, int(partial_audio_s * 1000 // key[0])))
        batches += _chunks(partials[key], size)
    return batches


def _chunks(members: list[int], size: int) -> list[list[int]]:
    return [members[i : i + size] for i in range(0, len(members), size)]


class DecodeScheduler:
    """Runs a round's batches on ``lanes`` threads of ``executor`` at once (a model with as many replicas,
    ``BatchedWhisper(lanes=...)``). Each lane takes the next planned batch when its own is done, so finals
    (planned first) start first. Partials never hold more than ``lanes - final_lanes`` lanes (at least
    one), so with ``final_lanes`` >= 1 a final that comes during a round of partials starts at once
    instead of waiting for a partial batch to end."""

    def __init__(self, decode: BatchDecoder, executor: Executor, engine: str, max_batch: int = 8,
                 partial_deadline_s: float = 0.5, lanes: int = 1, final_lanes: int = 0,
                 partial_batch_audio_s: float = PARTIAL_BATCH_AUDIO_S,
                 clock: Callable[[], float] = time.perf_counter):  # fmt: skip
        """``clock``: seconds, what the partial deadline is judged by (tests pass their own)."""
        self._decode = decode
        self._clock = clock
        self._partial_batch_audio_s = partial_batch_audio_s
        self._executor = executor
        self._engine = engine
        self._max_batch = max_batch
        self._partial_deadline_s = partial_deadline_s
        self._lanes = max(1, lanes)
        self._free_lanes = asyncio.Semaphore(self._lanes)  # shared by the rounds running at once
        # Partials decode on at most this many lanes at once (always at least one): the rest are kept
        # free of partials, so a final that comes while partials decode starts at once.
        self._partial_lanes = asyncio.Semaphore(max(1, self._lanes - max(0, final_lanes)))
        self._rounds = 0  # rounds begun: a round overtaken by a newer one starts no more partials
        self._decoding = 0  # lanes decoding a batch now
        self._planned = 0  # batches of the running rounds that no lane has taken yet
        # Set by the owner while a final waits for a round not begun yet: the running rounds start no more
        # partials, so that final's round need not wait for them (the owner clears it when it takes the
        # final for its round).
        self.final_waiting = False

    @property
    def idle_lane(self) -> bool:
        """A lane that may decode partials is idle and no planned batch waits for one: a new round's
        batches would start at once. A round's batches count as planned from its ``start`` on."""
        # A partial lane is held only by a batch that decodes or by one that waits for a lane (then planned).
        return self._decoding < self._lanes and not self._partial_lanes.locked() and self._planned == 0

    def start(self, requests: Sequence[DecodeRequest]) -> Decoding:
        """Begin a round: plan its batches now (``idle_lane`` counts them from here on), decode them on
        the lanes, and return the results as each batch is done (``Decoding``). A partial is dropped (its
        result None) when its batch would start past the deadline, after a newer round began, or while a
        final waits (``final_waiting``); finals are never dropped. Needs a running event loop."""
        started = self._clock()
        self._rounds += 1
        round_number = self._rounds
        plan = plan_batches(requests, self._max_batch, self._partial_batch_audio_s)
        # Shared by the round's lanes: each lane takes the next batch, finals (planned first) first.
        finals = deque(batch for batch in plan if requests[batch[0]].kind == "final")
        partials = deque(batch for batch in plan if requests[batch[0]].kind == "partial")
        self._planned += len(plan)
        told: asyncio.Queue[Told] = asyncio.Queue()

        def take(queue: deque[list[int]]) -> list[int]:
            self._planned -= 1
            return queue.popleft()

        async def decode(batch: list[int]) -> None:
            self._decoding += 1
            try:
                decoded = await self._decode_batch(requests, batch)
            finally:
                self._decoding -= 1
            for i, result in zip(batch, decoded, strict=True):
                told.put_nowait((i, result))

        async def lane() -> None:
            while True:
                async with self._free_lanes:  # a lane first, then the batch: finals are never dropped
                    if finals:
                        await decode(take(finals))
                        continue
                if not partials:  # done: never wait for a partial lane only to find nothing to take
                    return
                # A partial lane, then any lane (always in this order: no deadlock), then the batch:
                # the staleness check below is fresh.
                async with self._partial_lanes, self._free_lanes:
                    if not partials:
                        return
                    batch = take(partials)
                    late = self._clock() - started > self._partial_deadline_s
                    overtaken = self._rounds != round_number
                    if late or overtaken or self.final_waiting:
                        STT_DROPPED_PARTIALS.inc(len(batch))
                        for i in batch:
                            told.put_nowait((i, None))
                        continue
                    await decode(batch)

        async def lanes() -> None:
            try:  # one lane failing cancels the others: the round fails
                async with asyncio.TaskGroup() as group:
                    for _ in range(self._lanes):
                        group.create_task(lane())
            except ExceptionGroup as failed:
                raise failed.exceptions[0] from None
            finally:  # a failed or cancelled round's batches never start
                self._planned -= len(finals) + len(partials)

        return Decoding(lanes(), told)

    async def run(self, requests: Sequence[DecodeRequest]) -> list[Transcription | None]:
        """A whole round (``start``): the results in request order, None for a dropped partial."""
        results: list[Transcription | None] = [None] * len(requests)
        decoding = self.start(requests)
        try:
            async for index, result in decoding:
                results[index] = result
        finally:
            await decoding.aclose()
        return results

    async def _decode_batch(self, requests: Sequence[DecodeRequest], batch: list[int]) -> list[Transcription]:
        t0 = time.perf_counter()
        # Word timings (a second, alignment pass) only for finals: a partial needs only its words.
        with_words = [requests[i].kind == "final" for i in batch]
        first = requests[batch[0]]  # one language and one vocabulary per batch (plan_batches)
        decoded = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._decode, [requests[i].audio for i in batch], first.language, with_words,
            [requests[i].prompt for i in batch], first.vocabulary,
        )
        elapsed = time.perf_counter() - t0
        STT_DECODE_SECONDS.labels(engine=self._engine).observe(elapsed)
        audio_s = sum(len(requests[i].audio) / requests[i].sample_rate for i in batch)
        if audio_s > 0:
            STT_REAL_TIME_FACTOR.observe(elapsed / audio_s)
        STT_BATCH_SIZE.observe(len(batch))
        return decoded


class Decoding:
    """One round's decoding, begun by ``DecodeScheduler.start``: an async iterator of ``(request index,
    result)``, each as soon as its batch is done (a dropped partial's None as soon as it is dropped), every
    index once, in no fixed order. It ends once every lane of the round is done, and raises what failed
    the round. ``aclose`` cancels a round that is not iterated to its end (its batches not started never
    start)."""

    _END = (-1, None)

    def __init__(self, lanes: Awaitable[None], told: asyncio.Queue[Told]):
        self._told = told
        self._failure: Exception | None = None
        self._task = asyncio.ensure_future(self._run(lanes))

    async def _run(self, lanes: Awaitable[None]) -> None:
        try:
            await lanes
        except Exception as exc:  # kept for the iterator: the task itself never fails
            self._failure = exc
        finally:
            self._told.put_nowait(self._END)

    def __aiter__(self) -> Decoding:
        return self

    async def __anext__(self) -> Told:
        told = await self._told.get()
        if told is self._END:
            self._told.put_nowait(told)  # it stays ended
            if self._failure is not None:
                raise self._failure
            raise StopAsyncIteration
        return told

    async def aclose(self) -> None:
        if not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

"""The decode scheduler's batching policy and its overload behaviour (with a fake batch decoder)."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from prometheus_client import REGISTRY

from stt_workers.engine import Transcription, Word
from stt_workers.scheduler import DecodeRequest, DecodeScheduler, Told, plan_batches
from stt_workers.transcriber import Decode, KeyedEvent, OutputQueue


def req(kind: str, seconds: float) -> DecodeRequest:
    return DecodeRequest(kind=kind, audio=np.zeros(int(seconds * 16000), np.float32))  # type: ignore[arg-type]


def dropped_partials() -> float:
    return REGISTRY.get_sample_value("palaver_stt_dropped_partials_total") or 0.0


async def each_result(scheduler: DecodeScheduler, requests: list[DecodeRequest]) -> list[Told]:
    """A round's results in the order the scheduler yields them."""
    return [told async for told in scheduler.start(requests)]


def test_same_bucket_batched_finals_first_and_capped() -> None:
    requests = [
        req("partial", 1.0),
        req("final", 4.0),
        req("final", 1.5),
        req("partial", 4.5),
        req("final", 12.0),
    ]
    batches = plan_batches(requests, max_batch=8)
    buckets = [{requests[i].bucket for i in b} for b in batches]
    assert all(len(b) == 1 for b in buckets), "one bucket per batch"
    assert batches[:3] == [[2], [1], [4]], "finals first, shortest bucket first"
    assert batches[3:] == [[0], [3]], "then partials, shortest bucket first, never with finals"
    same_bucket = [req("final", 4.0), req("partial", 4.5), req("final", 3.0)]
    assert plan_batches(same_bucket, max_batch=8) == [[0, 2], [1]]
    assert sorted(i for b in batches for i in b) == list(range(len(requests)))
    many = [req("final", 2.0) for _ in range(19)]
    assert [len(b) for b in plan_batches(many, max_batch=8)] == [8, 8, 3]


def test_partial_only_batches_come_after_every_final() -> None:
    requests = [req("partial", 1.0), req("partial", 8.0), req("final", 8.0)]
    batches = plan_batches(requests, max_batch=8)
    assert batches == [[2], [0], [1]]


def test_results_in_request_order_and_stale_partials_dropped() -> None:
    calls: list[int] = []
    with_words_asked: list[list[bool]] = []

    def slow_decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        calls.append(len(batch))
        with_words_asked.append(with_words)
        time.sleep(0.2)
        return [
            Transcription(text=f"{len(a)}", words=(Word(str(len(a)), 0.0, 0.1, 0.9),), confidence=0.9)
            for a in batch
        ]

    requests = [req("final", 1.0), req("final", 6.0), req("partial", 15.0), req("final", 25.0)]
    scheduler = DecodeScheduler(
        slow_decode, ThreadPoolExecutor(1), "fake", max_batch=8, partial_deadline_s=0.3
    )
    before = dropped_partials()
    results = asyncio.run(scheduler.run(requests))
    assert [r.text if r else None for r in results] == ["16000", "96000", None, "400000"]
    assert calls == [1, 1, 1], "the partial's batch started after the deadline and was dropped"
    assert with_words_asked == [[True], [True], [True]]
    assert dropped_partials() - before == 1, "the dropped partial is counted"


def test_only_finals_ask_for_word_timings() -> None:
    asked: list[list[bool]] = []

    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        asked.append(with_words)
        return [Transcription(text="x", words=(), confidence=0.5) for _ in batch]

    scheduler = DecodeScheduler(decode, ThreadPoolExecutor(1), "fake")
    asyncio.run(scheduler.run([req("partial", 1.0), req("final", 1.2), req("partial", 7.0)]))
    assert asked == [[True], [False], [False]], "partials get no words"


def test_batches_are_measured() -> None:
    from palaver.metrics import STT_BATCH_SIZE, STT_REAL_TIME_FACTOR

    def count(metric: object) -> float:
        return next(s.value for s in metric.collect()[0].samples if s.name.endswith("_count"))  # type: ignore[attr-defined]

    before_batches, before_rtf = count(STT_BATCH_SIZE), count(STT_REAL_TIME_FACTOR)

    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        return [Transcription(text="", words=(), confidence=0.0) for _ in batch]

    scheduler = DecodeScheduler(decode, ThreadPoolExecutor(1), "fake")
    asyncio.run(scheduler.run([req("final", 1.0), req("final", 1.2), req("final", 7.0)]))
    assert count(STT_BATCH_SIZE) - before_batches == 2
    assert count(STT_REAL_TIME_FACTOR) - before_rtf == 2


def test_audio_time_of_a_sample_comes_from_the_newest_frame() -> None:
    from stt_workers.processor import StreamInfo, StreamState
    from stt_workers.segmenter import Segmenter, SegmenterPolicy

    state = StreamState(
        StreamInfo("m", "s", "m/s", 16000, 0), Segmenter(lambda w, state: (np.zeros(len(w)), state), SegmenterPolicy()), 0
    )
    state.last_frame = (1_000_000, 32_000)  # the frame ending at 2 s of audio reached Kafka at t = 1000 s
    assert state.audio_time_ms(32_000) == 1_000_000
    assert state.audio_time_ms(16_000) == 999_000


def test_languages_never_share_a_batch() -> None:
    def lang_req(kind: str, seconds: float, language: str) -> DecodeRequest:
        audio = np.zeros(int(seconds * 16000), np.float32)
        return DecodeRequest(kind, audio, language=language)  # type: ignore[arg-type]

    requests = [
        lang_req("final", 1.0, "en"),
        lang_req("partial", 1.5, "de"),
        lang_req("final", 2.0, "de"),
        lang_req("partial", 1.2, "en"),
        lang_req("partial", 2.2, "fr"),
        lang_req("final", 7.0, "en"),
    ]
    batches = plan_batches(requests, max_batch=8)
    assert all(len({requests[i].language for i in b}) == 1 for b in batches), "one language per batch"
    assert sorted(i for b in batches for i in b) == list(range(len(requests)))
    # Finals first, then partials, shortest bucket first, each batch of one language.
    assert batches == [[2], [0], [5], [1], [3], [4]]


def test_each_batch_is_decoded_in_its_language() -> None:
    seen: list[tuple[str, int]] = []

    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        seen.append((language, len(batch)))
        return [Transcription(text=language, words=(), confidence=0.5) for _ in batch]

    requests = [DecodeRequest("final", np.zeros(16000, np.float32), language=lang) for lang in ("en", "de", "en")]
    results = asyncio.run(DecodeScheduler(decode, ThreadPoolExecutor(1), "fake").run(requests))
    assert [r.text if r else None for r in results] == ["en", "de", "en"]
    assert sorted(seen) == [("de", 1), ("en", 2)]


def test_each_result_is_ready_when_its_batch_is_done() -> None:
    told: list[tuple[int, str | None, int]] = []  # (request, text, batches decoded when told)
    batches = 0
    now = [0.0]  # the scheduler's clock: each decode takes 0.2 s of it, whatever the machine's load
    # Later batches wait until the first result is told: a scheduler that told results only once every
    # batch was done would keep them waiting (and the timeout shows in ``told``).
    first_told = threading.Event()

    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        nonlocal batches
        if batches:
            first_told.wait(timeout=10)
        now[0] += 0.2
        batches += 1
        return [Transcription(text=f"{len(a)}", words=(), confidence=0.9) for a in batch]

    requests = [req("partial", 8.0), req("final", 1.0), req("partial", 25.0)]
    scheduler = DecodeScheduler(decode, ThreadPoolExecutor(1), "fake", partial_deadline_s=0.3, clock=lambda: now[0])

    async def scenario() -> None:
        async for i, r in scheduler.start(requests):
            told.append((i, r.text if r else None, batches))
            first_told.set()

    asyncio.run(scenario())
    # The final's batch first, told before the next batch was done; the 8 s partial next; the 25 s
    # partial's batch started past the deadline: told None, never decoded.
    assert told == [(1, "16000", 1), (0, "128000", 2), (2, None, 2)]


def test_a_waiting_final_preempts_the_rounds_partials_not_its_finals() -> None:
    decoded: list[int] = []  # clip lengths, in decode order
    final_comes = True
    scheduler: DecodeScheduler

    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        decoded.extend(len(a) for a in batch)
        if final_comes:
            scheduler.final_waiting = True  # a final was queued for the next round while this batch ran
        return [Transcription(text="x", words=(), confidence=0.5) for _ in batch]

    requests = [req("partial", 1.0), req("final", 1.0), req("final", 7.0), req("partial", 3.0)]
    scheduler = DecodeScheduler(decode, ThreadPoolExecutor(1), "fake", partial_deadline_s=60)
    before = dropped_partials()
    told = asyncio.run(each_result(scheduler, requests))
    assert decoded == [16000, 112000], "both finals decoded, no partial after the preemption"
    assert sorted((i, r.text if r else None) for i, r in told) == [(0, None), (1, "x"), (2, "x"), (3, None)]
    assert dropped_partials() - before == 2, "each preempted partial is counted"
    # The final was taken for its round (its owner clears the flag): partials decode again.
    scheduler.final_waiting, final_comes = False, False
    assert asyncio.run(scheduler.run([req("partial", 2.0)]))[0] is not None and decoded[-1] == 32000


def _decode(kind: str) -> Decode:
    return Decode(req(kind, 1.0))


def test_queue_says_when_a_final_waits() -> None:
    queue = OutputQueue()
    queue.decode("s1", _decode("partial"), partial=True)
    assert not queue.pending().final
    queue.decode("s2", _decode("final"))
    assert queue.pending().final
    assert len(queue.take()) == 2
    assert not queue.pending().final
    eager = _decode("final")
    queue.decode("s3", eager, partial=True)
    assert not queue.pending().final, "an eager decode, while its utterance may go on"
    queue.keep("s3", eager)
    assert queue.pending().final, "the eager decode became the final's"
    queue.take()
    queue.emit("s4", KeyedEvent("m", b"final"), final=True)
    assert queue.pending().final, "a final decoded already"


def test_a_partial_batch_holds_a_bounded_amount_of_audio() -> None:
    from stt_workers.scheduler import PARTIAL_BATCH_AUDIO_S

    long_partials = [req("partial", 8.0) for _ in range(8)]  # bucket 10 s
    sizes = [len(b) for b in plan_batches(long_partials, max_batch=8)]
    assert sizes == [int(PARTIAL_BATCH_AUDIO_S // 10)] * (8 // int(PARTIAL_BATCH_AUDIO_S // 10))
    assert [len(b) for b in plan_batches([req("partial", 2.0) for _ in range(8)], max_batch=8)] == [8]
    assert [len(b) for b in plan_batches([req("final", 8.0) for _ in range(8)], max_batch=8)] == [8], "finals: max_batch"


def test_lanes_decode_batches_at_once_finals_first() -> None:
    import threading

    both_running = threading.Barrier(2, timeout=5)  # breaks (fails the test) unless two batches run at once
    started: list[str] = []

    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        started.append("final" if with_words[0] else "partial")
        if len(started) <= 2:
            both_running.wait()
        return [Transcription(text=f"{len(a)}", words=(), confidence=0.5) for a in batch]

    # Three batches: two finals (buckets 2.5 s and 10 s), then a partial.
    requests = [req("partial", 1.0), req("final", 1.0), req("final", 7.0)]
    scheduler = DecodeScheduler(decode, ThreadPoolExecutor(2), "fake", partial_deadline_s=60, lanes=2)
    results = asyncio.run(scheduler.run(requests))
    assert started == ["final", "final", "partial"], "the two lanes take the finals' batches first"
    assert [r.text if r else None for r in results] == ["16000", "16000", "112000"]


def test_a_failing_lane_fails_the_round() -> None:
    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        if len(batch[0]) > 16000:
            raise RuntimeError("decoder broke")
        time.sleep(0.1)
        return [Transcription(text="x", words=(), confidence=0.5) for _ in batch]

    scheduler = DecodeScheduler(decode, ThreadPoolExecutor(2), "fake", lanes=2)
    with pytest.raises(RuntimeError, match="decoder broke"):
        asyncio.run(scheduler.run([req("final", 1.0), req("final", 7.0)]))


def test_a_newer_round_overtakes_and_lanes_are_shared() -> None:
    import threading

    running = threading.Semaphore(0)
    go = threading.Event()
    decoded: list[int] = []  # clip lengths, in decode order
    at_once = 0
    busy = 0
    lock = threading.Lock()

    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        nonlocal at_once, busy
        with lock:
            busy += 1
            at_once = max(at_once, busy)
            decoded.extend(len(a) for a in batch)
        running.release()
        go.wait(5)
        with lock:
            busy -= 1
        return [Transcription(text="x", words=(), confidence=0.5) for _ in batch]

    async def scenario() -> tuple[list[Transcription | None], list[Transcription | None]]:
        scheduler = DecodeScheduler(decode, ThreadPoolExecutor(4), "fake", max_batch=1, partial_deadline_s=60, lanes=1)
        # Round 1: three partials; its first batch is running when round 2 (a final) begins.
        first = asyncio.ensure_future(scheduler.run([req("partial", 1.0), req("partial", 2.0), req("partial", 3.0)]))
        await asyncio.get_running_loop().run_in_executor(None, running.acquire)
        second = asyncio.ensure_future(scheduler.run([req("final", 4.0)]))
        await asyncio.sleep(0.05)
        go.set()
        return await first, await second

    old, new = asyncio.run(scenario())
    assert decoded == [16000, 64000], "the running partial ends, the final takes the lane, no other partial starts"
    assert at_once == 1, "one lane for both rounds"
    assert [r is not None for r in old] == [True, False, False]
    assert new[0] is not None


def test_idle_lane_only_once_every_planned_batch_has_started() -> None:
    import threading

    release = {1: threading.Event(), 2: threading.Event()}  # by clip length in seconds
    seen: list[bool] = []

    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        release[len(batch[0]) // 16000].wait(5)
        return [Transcription(text="x", words=(), confidence=0.5) for _ in batch]

    async def scenario() -> None:
        scheduler = DecodeScheduler(decode, ThreadPoolExecutor(2), "fake", max_batch=1, partial_deadline_s=60, lanes=2)
        seen.append(scheduler.idle_lane)
        # Three batches on two lanes: the third waits for a lane.
        decoding = scheduler.start([req("partial", 1.0), req("partial", 1.0), req("partial", 2.0)])
        seen.append(scheduler.idle_lane)  # planned by ``start``, before any lane ran
        running = asyncio.ensure_future(each_told(decoding))
        await asyncio.sleep(0.05)
        seen.append(scheduler.idle_lane)  # both lanes decode the 1 s clips, the 2 s clip waits
        release[1].set()
        await asyncio.sleep(0.1)
        seen.append(scheduler.idle_lane)  # one lane decodes the 2 s clip, the other has nothing to take
        release[2].set()
        await running
        seen.append(scheduler.idle_lane)

    asyncio.run(scenario())
    assert seen == [True, False, False, True, True]


async def each_told(decoding: object) -> list[Told]:
    return [told async for told in decoding]  # type: ignore[attr-defined]


def test_a_closed_round_starts_no_more_batches_and_leaves_none_planned() -> None:
    import threading

    go = threading.Event()
    decoded: list[int] = []

    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        decoded.append(len(batch[0]))
        go.wait(5)
        return [Transcription(text="x", words=(), confidence=0.5) for _ in batch]

    async def scenario() -> None:
        scheduler = DecodeScheduler(decode, ThreadPoolExecutor(1), "fake", max_batch=1, lanes=1)
        decoding = scheduler.start([req("final", 1.0), req("final", 2.0)])
        await asyncio.sleep(0.05)  # the first batch decodes
        await decoding.aclose()
        go.set()
        assert scheduler.idle_lane
        await asyncio.sleep(0.05)

    asyncio.run(scenario())
    assert decoded == [16000], "the second batch never started"


def test_a_failed_round_leaves_no_planned_batches() -> None:
    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        raise RuntimeError("decoder broke")

    scheduler = DecodeScheduler(decode, ThreadPoolExecutor(1), "fake", max_batch=1, lanes=1)
    with pytest.raises(RuntimeError, match="decoder broke"):
        asyncio.run(scheduler.run([req("final", 1.0), req("final", 2.0), req("partial", 3.0)]))
    assert scheduler.idle_lane


def test_a_final_lane_is_kept_free_of_partials() -> None:
    import threading

    partial_running = threading.Event()
    go = threading.Event()
    decoded: list[str] = []
    partials_at_once = 0
    partials_busy = 0
    lock = threading.Lock()
    final_ran_during_partial = threading.Event()

    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        nonlocal partials_at_once, partials_busy
        kind = "final" if with_words[0] else "partial"
        with lock:
            decoded.append(kind)
            if kind == "partial":
                partials_busy += 1
                partials_at_once = max(partials_at_once, partials_busy)
            elif partials_busy:
                final_ran_during_partial.set()
        if kind == "partial":
            partial_running.set()
            go.wait(5)
            with lock:
                partials_busy -= 1
        return [Transcription(text="x", words=(), confidence=0.5) for _ in batch]

    async def scenario() -> tuple[list[Transcription | None], list[Transcription | None], bool]:
        scheduler = DecodeScheduler(decode, ThreadPoolExecutor(2), "fake", max_batch=1, partial_deadline_s=60,
                                    lanes=2, final_lanes=1)  # fmt: skip
        # Round 1: two partials on two lanes, but only one lane may decode partials.
        first = asyncio.ensure_future(scheduler.run([req("partial", 1.0), req("partial", 2.0)]))
        await asyncio.get_running_loop().run_in_executor(None, partial_running.wait, 5)
        await asyncio.sleep(0.05)
        idle_while_a_partial_decodes = scheduler.idle_lane
        # Round 2: a final, while the first partial still decodes: it takes the free lane at once, and
        # its round ends without waiting for the partial lane (go is set only after it).
        second = await asyncio.wait_for(scheduler.run([req("final", 4.0)]), timeout=2)
        go.set()
        return await first, second, idle_while_a_partial_decodes

    old, new, idle = asyncio.run(scenario())
    assert final_ran_during_partial.is_set(), "the final decoded while the partial held the other lane"
    assert partials_at_once == 1, "partials never took the final lane"
    assert decoded == ["partial", "final"], "the overtaken round's second partial never started"
    assert [r is not None for r in old] == [True, False]
    assert new[0] is not None
    assert not idle, "the one partial lane is busy: a new round of partials would only wait"


def test_final_lanes_leave_partials_at_least_one_lane() -> None:
    def decode(
        batch: list[np.ndarray], language: str, with_words: list[bool], prompts: list[str], vocabulary: str = ""
    ) -> list[Transcription]:
        return [Transcription(text="x", words=(), confidence=0.5) for _ in batch]

    scheduler = DecodeScheduler(decode, ThreadPoolExecutor(1), "fake", lanes=1, final_lanes=1)
    results = asyncio.run(scheduler.run([req("partial", 1.0), req("final", 2.0)]))
    assert [r is not None for r in results] == [True, True]
    assert scheduler.idle_lane

"""One process's share of ``palaver bench decode``: the real STT worker (``SttWorker`` on the consumer runner,
``LocalTranscriber``: Silero VAD, the decode scheduler, batched Whisper) over the in-memory broker, fed N
talking streams at real time, and the lags of what it publishes.

Each stream reads a speech track from its own offset, looping, as 100 ms frames; a tenth of the streams
is fed every 10 ms, as clients that joined at different moments would send. Each frame's append time is
kept, so an event's lag is its record's append time minus the append time of the frame that brought the
audio up to the event's ``end_ms``:

- partial lag: per ``transcript.partial``;
- final lag (end of speech to final): per ``transcript.final``, from the frame that held the utterance's end
  (it includes the VAD's wait for the silence that ends an utterance, as a user sees it).

Events about audio sent in the first ``warmup_s`` are not counted.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

SAMPLE_RATE = 16000
FRAME_SAMPLES = 1600  # 100 ms, as the browser and the demo client send
FEED_GROUPS = 10  # streams fed in turn every 10 ms


@dataclass(frozen=True)
class Share:
    """What one process runs: its streams (global indexes, so every stream reads the same audio whatever
    the split), for how long, with which decode settings (``PALAVER_*`` values, over the environment's)."""

    streams: tuple[int, ...]
    seconds: float
    warmup_s: float
    settings: dict[str, Any]
    speech: str  # an .npz of int16 tracks (bench.decode writes it)
    speakers_per_meeting: int = 4


def load_tracks(path: str) -> list[np.ndarray]:
    data = np.load(path)
    return [data[k] for k in sorted(data.files) if k.startswith("pcm")]


def stream_audio(tracks: list[np.ndarray], index: int, frames: int) -> np.ndarray:
    """``frames`` frames of stream ``index``: its track (streams take the tracks in turn) from an offset
    of its own, looped."""
    track = tracks[index % len(tracks)]
    start = (index * 7919 * FRAME_SAMPLES // 10) % len(track)  # a prime stride: offsets spread over the track
    positions = (start + np.arange(frames * FRAME_SAMPLES)) % len(track)
    return track[positions]


def run_share(share: Share) -> dict[str, Any]:
    """Run one share in this process (a child of ``bench.decode``); returns its raw figures."""
    return asyncio.run(_run(share))


async def _run(share: Share) -> dict[str, Any]:
    from palaver.events.registry import AUDIO_FRAMES, TRANSCRIPTS, topic_name
    from palaver.settings import Settings
    from palaver.streams.memory_broker import MemoryBroker
    from palaver.streams.runner import ConsumerRunner
    from stt_workers.local_transcriber import LocalTranscriber, whisper_engine
    from stt_workers.pipeline import RUNNER, SttWorker
    from stt_workers.vad import SileroScorer

    settings = Settings(**share.settings)
    engine = whisper_engine(settings)
    tracks = load_tracks(share.speech)
    # A mixed batch (a final with word timings, a partial without) before the clock starts: the first
    # calls on a GPU load its kernels.
    warm = [t[: 5 * SAMPLE_RATE].astype(np.float32) / 32768 for t in (tracks * 2)[:2]]
    engine.decode(warm, "en", [True, False])  # type: ignore[attr-defined]
    transcriber = LocalTranscriber(settings, engine, SileroScorer())
    broker = MemoryBroker(partitions=8)
    producer = broker.producer()
    worker = SttWorker(settings, transcriber, producer)
    runner = ConsumerRunner(settings, RUNNER, worker, producer, consumer_factory=broker.consumer)  # type: ignore[arg-type]
    audio_topic = topic_name(settings.topic_namespace, AUDIO_FRAMES.name)
    transcripts_topic = topic_name(settings.topic_namespace, TRANSCRIPTS.name)
    frames = math.ceil(share.seconds * 10)
    feeds = {i: stream_audio(tracks, i, frames) for i in share.streams}
    stop = asyncio.Event()
    running = asyncio.create_task(runner.run(stop))
    sent: dict[str, np.ndarray] = {}
    cpu0, wall0 = time.process_time(), time.time()
    try:
        sent = await _feed(broker, audio_topic, share, feeds, frames)
        fed_until = time.time()
        await _drain(broker, transcripts_topic, len(share.streams), running)
        drained_s = time.time() - fed_until
    finally:
        stop.set()
        await running
    cpu_s, wall_s = time.process_time() - cpu0, time.time() - wall0
    figures = _lags(broker.records(transcripts_topic), sent, wall0 + share.warmup_s)
    return {**figures, "cpu_s": cpu_s, "wall_s": wall_s, "drain_s": drained_s, **_decode_counts()}


def _ids(index: int, per_meeting: int) -> tuple[str, str, str]:
    from palaver import ids

    meeting, speaker = f"mtg_bench{index // per_meeting}", f"usr_bench{index}"
    return meeting, speaker, ids.stream_id(meeting, speaker)


async def _feed(broker: Any, topic: str, share: Share, feeds: dict[int, np.ndarray], frames: int) -> dict[str, np.ndarray]:
    """Append every stream's frames at real time; returns each stream's frame append times."""
    from palaver import ids
    from palaver.events import AudioFrameV1, StreamStartedV1, StreamStoppedV1, encode

    def lifecycle(stream: str, event: StreamStartedV1 | StreamStoppedV1) -> None:  # as ingest sends them
        broker.append(topic, encode(event), key=stream.encode(), headers=[("event", event.event.encode()), ("version", b"1")])

    streams = {i: _ids(i, share.speakers_per_meeting) for i in feeds}
    for meeting, speaker, stream in streams.values():
        lifecycle(stream, StreamStartedV1(event_id=ids.event_id("stream.started", stream, 0), meeting_id=meeting,
                                          speaker_id=speaker, stream_id=stream, sample_rate=SAMPLE_RATE,
                                          stream_start_ms=0))  # fmt: skip
    sent = {stream: np.zeros(frames) for _, _, stream in streams.values()}
    groups = [[i for i in feeds if i % FEED_GROUPS == g] for g in range(FEED_GROUPS)]
    start = time.monotonic()
    for tick in range(frames * FEED_GROUPS):
        frame, group = divmod(tick, FEED_GROUPS)
        delay = start + tick * 0.1 / FEED_GROUPS - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.time()
        for i in groups[group]:
            meeting, speaker, stream = streams[i]
            pcm = feeds[i][frame * FRAME_SAMPLES : (frame + 1) * FRAME_SAMPLES].tobytes()
            audio = AudioFrameV1(meeting, speaker, stream, SAMPLE_RATE, frame * FRAME_SAMPLES, 0, pcm)
            broker.append(topic, audio.pcm, key=stream.encode(), headers=audio.kafka_headers())
            sent[stream][frame] = now
    for meeting, speaker, stream in streams.values():
        lifecycle(stream, StreamStoppedV1(event_id=ids.event_id("stream.stopped", stream, frames * FRAME_SAMPLES),
                                          meeting_id=meeting, speaker_id=speaker, stream_id=stream,
                                          stream_start_ms=0, end_sample=frames * FRAME_SAMPLES, reason="end"))  # fmt: skip
    return sent


async def _drain(broker: Any, topic: str, streams: int, running: asyncio.Task[None], limit_s: float = 120) -> None:
    """Wait until the worker has forwarded every stream's ``stream.stopped`` (all its finals are out)."""
    deadline = time.monotonic() + limit_s
    seen: dict[int, int] = {}  # partition -> records looked at
    stopped = 0
    while time.monotonic() < deadline and not running.done():
        for partition, log in enumerate(broker.logs.get(topic, [])):
            stopped += sum(1 for r in log[seen.get(partition, 0) :] if b'"stream.stopped"' in r.value)
            seen[partition] = len(log)
        if stopped >= streams:
            return
        await asyncio.sleep(0.1)
    if running.done():
        running.result()  # raises what stopped the worker
    raise TimeoutError(f"the worker did not finish the streams within {limit_s:.0f} s of their end")


def _lags(records: list[Any], sent: dict[str, np.ndarray], counted_from: float) -> dict[str, Any]:
    from palaver.events import TranscriptFinalV1, TranscriptPartialV1, decode

    partial, final, words = [], [], 0
    for record in records:
        event = decode(record.value)
        if not isinstance(event, TranscriptPartialV1 | TranscriptFinalV1):
            continue
        times = sent[event.stream_id]
        frame = min(len(times) - 1, max(0, math.ceil(event.end_ms * SAMPLE_RATE / 1000 / FRAME_SAMPLES) - 1))
        if times[frame] < counted_from:
            continue
        lag = record.timestamp / 1000 - times[frame]
        if isinstance(event, TranscriptPartialV1):
            partial.append(lag)
        else:
            final.append(lag)
            words += len(event.text.split())
    return {"partial_lags": partial, "final_lags": final, "final_words": words}


def _decode_counts() -> dict[str, float]:
    """Clips decoded, decode calls and partials dropped as stale in this process (the worker's metrics)."""
    from prometheus_client import REGISTRY

    def value(name: str) -> float:
        return float(REGISTRY.get_sample_value(name) or 0.0)

    return {
        "decoded_clips": value("palaver_stt_decode_batch_size_sum"),
        "decode_calls": value("palaver_stt_decode_batch_size_count"),
        "dropped_partials": value("palaver_stt_dropped_partials_total"),
        "pid": os.getpid(),
    }

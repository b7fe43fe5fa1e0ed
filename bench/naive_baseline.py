"""The naive baseline: what a common streaming Whisper server does (whisper_streaming-style), for
comparison with Palaver in ``palaver bench stt``.

One faster-whisper model, one decode thread. Streams take turns (round robin): a stream with at least
``interval_s`` of new audio has its buffered window (the last ``window_s`` seconds) transcribed again with
plain ``WhisperModel.transcribe``, and the result is emitted as that stream's partial hypothesis covering
its audio up to the end of the window. No VAD, no batching, no trimming of the encoder's 30 s input.
Audio is fed in-process at real time; there is no Kafka.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bench.speech import SAMPLE_RATE, SendLog, Track, coverage_lags, speech_frame_ends


@dataclass(frozen=True)
class Hypothesis:
    stream: str
    end_sample: int  # the hypothesis covers the stream's audio up to here
    text: str
    produced_at: float  # epoch seconds


@dataclass
class _Stream:
    chunks: list[np.ndarray] = field(default_factory=list)
    fed: int = 0
    decoded_to: int = 0
    closed: bool = False


class NaiveStreamingServer:
    """Thread-safe ``feed``/``close``; ``run`` decodes on the calling thread until every stream is closed
    and fully decoded, or ``stop`` is called."""

    def __init__(self, model_dir: str, threads: int = 2, compute_type: str = "int8", beam_size: int = 1,
                 window_s: float = 30.0, interval_s: float = 1.0, language: str = "en"):  # fmt: skip
        from faster_whisper import WhisperModel

        self._model = WhisperModel(model_dir, device="cpu", compute_type=compute_type, cpu_threads=threads)
        self._beam_size, self._language = beam_size, language
        self._window = int(window_s * SAMPLE_RATE)
        self._interval = int(interval_s * SAMPLE_RATE)
        self._streams: dict[str, _Stream] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.hypotheses: list[Hypothesis] = []

    def open(self, stream: str) -> None:
        with self._lock:
            self._streams[stream] = _Stream()

    def feed(self, stream: str, pcm: np.ndarray) -> None:
        with self._lock:
            state = self._streams[stream]
            state.chunks.append(pcm.astype(np.float32) / 32768.0)
            state.fed += len(pcm)

    def close(self, stream: str) -> None:
        with self._lock:
            self._streams[stream].closed = True

    def stop(self) -> None:
        self._stop.set()

    def warm_up(self) -> None:
        list(self._model.transcribe(np.zeros(SAMPLE_RATE, np.float32), language=self._language, beam_size=1)[0])

    def run(self) -> None:
        order: list[str] = []
        turn = 0
        while not self._stop.is_set():
            with self._lock:
                order = sorted(self._streams)
                ready = [s for s in order if self._due(self._streams[s])]
                done = bool(order) and all(st.closed and st.decoded_to >= st.fed for st in self._streams.values())
            if done:
                return
            if not ready:
                time.sleep(0.01)
                continue
            # Round robin: the first due stream at or after this turn's position.
            stream = min(ready, key=lambda s: (order.index(s) - turn) % len(order))
            turn = order.index(stream) + 1
            with self._lock:
                state = self._streams[stream]
                audio = np.concatenate(state.chunks)
                state.chunks = [audio[-self._window :]]  # keep only the window (drop older audio)
                end = state.fed
            window = audio[-self._window :]
            segments, _ = self._model.transcribe(window, language=self._language, beam_size=self._beam_size,
                                                 vad_filter=False, condition_on_previous_text=False)  # fmt: skip
            text = " ".join(s.text.strip() for s in segments)
            self.hypotheses.append(Hypothesis(stream, end, text, time.time()))
            with self._lock:
                state.decoded_to = end

    def _due(self, state: _Stream) -> bool:
        new = state.fed - state.decoded_to
        return new >= self._interval or (state.closed and new > 0)


@dataclass
class BaselineRun:
    lags_s: list[float]  # per hypothesis: produced minus when its last sample was fed
    coverage_lags_s: list[float]  # per 100 ms of speech: first hypothesis reaching it minus when it was fed
    never_shown: int
    last_text: dict[str, str]
    cpu_percent: float
    wall_s: float


def run_baseline(server: NaiveStreamingServer, tracks: list[Track], frame_ms: int = 100,
                 on_progress: Callable[[float], None] | None = None) -> BaselineRun:
    """Feed ``tracks`` concurrently at real time (one frame per stream every ``frame_ms``) while the
    server decodes; lag of a hypothesis = when it was produced minus when its last sample was fed."""
    server.hypotheses.clear()
    step = SAMPLE_RATE * frame_ms // 1000
    logs = {t.speaker_id: SendLog(step) for t in tracks}
    for t in tracks:
        server.open(t.speaker_id)

    def feeder() -> None:
        started = time.monotonic()
        frames = max(len(t.pcm) for t in tracks) // step + 1
        for i in range(frames):
            for t in tracks:
                chunk = t.pcm[i * step : (i + 1) * step]
                if len(chunk):
                    server.feed(t.speaker_id, chunk)
                    logs[t.speaker_id].sent_at.append(time.time())
                    if (i + 1) * step >= len(t.pcm):
                        server.close(t.speaker_id)
            if on_progress:
                on_progress(i * frame_ms / 1000)
            delay = started + (i + 1) * frame_ms / 1000 - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    cpu0, wall0 = time.process_time(), time.monotonic()
    thread = threading.Thread(target=feeder, name="naive-feeder", daemon=True)
    thread.start()
    server.run()
    thread.join()
    wall = time.monotonic() - wall0
    cpu = (time.process_time() - cpu0) / wall * 100
    coverage, never_shown = [], 0
    for t in tracks:
        updates = [(h.produced_at, h.end_sample) for h in server.hypotheses if h.stream == t.speaker_id]
        lags_t, missed = coverage_lags(updates, logs[t.speaker_id], speech_frame_ends(t.pcm, step))
        coverage += lags_t
        never_shown += missed
    lags = []
    last_text: dict[str, str] = {}
    for h in server.hypotheses:
        sent = logs[h.stream].sent_by(h.end_sample)
        if sent is not None:
            lags.append(h.produced_at - sent)
        last_text[h.stream] = h.text
    return BaselineRun(lags, coverage, never_shown, last_text, cpu, wall)

"""Whisper batching benchmark: the cost of one stream-update (decoding one stream's open utterance) with
faster-whisper's 30 s window, against ``BatchedWhisper``'s trimmed windows alone and in batches, and the
word error rate of each mode against the scripts, all in one run on the same audio.

Audio: hibari speech of distinct sentences, joined with short pauses into clips that fill a 5 s or a 10 s
window (``BatchedWhisper`` pads a clip with 0.5 s of silence and rounds up to whole seconds). Modes:
``naive`` (``WhisperEngine.transcribe``: faster-whisper, 30 s encoder pad, word timestamps), ``trimmed-b1``
(``BatchedWhisper.transcribe``), ``trimmed-b4`` and ``trimmed-b8`` (``decode`` on 4 or 8 streams' clips),
each with word timestamps, and ``trimmed-b8-text`` (batches of 8 without word timings, as partials are
decoded). Every trimmed mode runs with both of ``BatchedWhisper``'s decode modes (``timestamps``: timestamp
tokens; ``aligned``: none, run-on words cut after one alignment pass), side by side on the same clips. Each
mode decodes every clip ``--reps`` times; the figure is the median over repetitions of (time for all clips
/ clips).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import OUT, Progress, write_results
from palaver.textmetrics import word_error_rate

SAMPLE_RATE = 16000
SENTENCES = (
    "The quarterly budget review is scheduled for next Tuesday.",
    "Please send me the updated slides before lunch.",
    "We should hire two more engineers for the platform team.",
    "Can everyone hear me, or is my microphone muted?",
    "Let's move the launch date to the end of March.",
    "I think the customer feedback was mostly positive.",
    "Who is taking notes for this meeting today?",
    "The database migration failed twice last night.",
    "Our marketing campaign starts in the second week of May.",
    "I will share the contract with the legal department tomorrow.",
    "The new office has a much larger kitchen.",
    "Could you explain why the server costs doubled?",
    "Sarah is presenting the design proposal this afternoon.",
    "We need a decision on the vendor by Friday.",
    "The training session was recorded for everyone who missed it.",
    "Let's take a short break and continue at three.",
)
WINDOWS_S = (5, 10)
MARGIN_S = 0.5  # BatchedWhisper's default trailing silence
PAUSE_S = 0.3


def make_clips(voice: Any, window_s: float, count: int) -> list[tuple[str, np.ndarray]]:
    """``count`` clips of whole sentences (cycling through SENTENCES), each as long as fits ``window_s``."""
    said = [voice.say(s, seed=i) for i, s in enumerate(SENTENCES)]
    pause = np.zeros(int(PAUSE_S * SAMPLE_RATE), np.float32)
    clips, k = [], 0
    for _ in range(count):
        parts: list[np.ndarray] = []
        words: list[str] = []
        while True:
            audio = said[k % len(said)]
            length = sum(len(p) for p in parts) + len(pause) * bool(parts) + len(audio)
            if parts and length > (window_s - MARGIN_S) * SAMPLE_RATE:
                break
            parts += [pause, audio] if parts else [audio]
            words.append(SENTENCES[k % len(SENTENCES)])
            k += 1
        clips.append((" ".join(words), np.concatenate(parts)[: int((window_s - MARGIN_S) * SAMPLE_RATE)]))
    return clips


def decoder(engine: Any, audio: list[np.ndarray], size: int, words: bool = True) -> Callable[[], list[str]]:
    """Decode every clip: one at a time through ``transcribe`` at size 1, else ``decode`` by ``size``
    (with word timings or not)."""
    if size == 1:
        return lambda: [engine.transcribe(a, "en").text for a in audio]
    return lambda: [
        t.text for i in range(0, len(audio), size) for t in engine.decode(audio[i : i + size], "en", words)
    ]


def measure(decode_all: Callable[[], list[str]], clips: int, reps: int) -> tuple[float, list[str]]:
    times, texts = [], []
    for _ in range(reps):
        started = time.perf_counter()
        texts = decode_all()
        times.append((time.perf_counter() - started) * 1000 / clips)
    return statistics.median(times), texts


def run(reps: int, clips_per_window: int, threads: int) -> dict[str, Any]:
    from palaver.demo.synth import Voice
    from palaver.settings import bundled_whisper_model_dir
    from stt_workers.batched_whisper import DECODE_MODES, BatchedWhisper
    from stt_workers.whisper_engine import WhisperEngine

    model_dir = str(bundled_whisper_model_dir())
    naive = WhisperEngine(model_dir, threads=threads)
    batched = {mode: BatchedWhisper(model_dir, threads=threads, decode_mode=mode) for mode in DECODE_MODES}
    voice = Voice()
    rows: list[dict[str, Any]] = []
    modes: list[tuple[str, int, bool]] = [
        ("trimmed-b1", 1, True), ("trimmed-b4", 4, True), ("trimmed-b8", 8, True), ("trimmed-b8-text", 8, False),
    ]  # fmt: skip
    runs = [("naive", 1, True, "-"), *((m, size, words, d) for m, size, words in modes for d in DECODE_MODES)]
    progress = Progress("whisper batching", len(WINDOWS_S) * len(runs))
    for window_s in WINDOWS_S:
        clips = make_clips(voice, window_s, clips_per_window)
        scripts = [script for script, _ in clips]
        audio = [a for _, a in clips]
        for engine in batched.values():
            engine.decode(audio[:2], "en")  # warm-up
        for mode, size, words, decode in runs:
            engine = naive if mode == "naive" else batched[decode]
            ms, texts = measure(decoder(engine, audio, size, words), len(audio), reps)
            wers = [word_error_rate(s, t) for s, t in zip(scripts, texts, strict=True)]
            rows.append({
                "window_s": window_s, "mode": mode, "decode": decode, "batch": size, "words": words,
                "ms_per_update": round(ms, 1), "wer": round(float(np.mean(wers)), 4), "clips": len(audio),
                "mean_audio_s": round(float(np.mean([len(a) for a in audio])) / SAMPLE_RATE, 2),
            })  # fmt: skip
            progress.update(len(rows), f"{window_s} s {mode} {decode}")
    progress.close()
    for row in rows:
        base = next(r for r in rows if r["window_s"] == row["window_s"] and r["mode"] == "naive")
        row["speedup_vs_naive"] = round(base["ms_per_update"] / row["ms_per_update"], 2)
    return {"threads": threads, "reps": reps, "model": naive.model, "rows": rows}


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    for r in rows:
        r["label"] = r["mode"] if r["decode"] == "-" else f"{r['mode']}\n{r['decode']}"
    modes = list(dict.fromkeys(r["label"] for r in rows))
    fig, ax = plt.subplots(figsize=(13, 4.5))
    width = 0.8 / len(WINDOWS_S)
    for k, window_s in enumerate(WINDOWS_S):
        values = [
            next(r["ms_per_update"] for r in rows if r["label"] == m and r["window_s"] == window_s)
            for m in modes
        ]
        bars = ax.bar([i + k * width for i in range(len(modes))], values, width, label=f"{window_s} s window")
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.set_xticks([i + width * (len(WINDOWS_S) - 1) / 2 for i in range(len(modes))], modes, fontsize=7)
    ax.set_ylabel("ms per stream-update")
    ax.set_title(
        f"Whisper {results['model']} int8, {results['threads']} threads: naive 30 s pad vs trimmed batches"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--clips", type=int, default=8, help="clips per window length (a multiple of 8)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results = run(args.reps, args.clips, args.threads)
    print(f"{'window':>6} {'mode':<15} {'decode':<10} {'ms/update':>9} {'speed-up':>8} {'WER':>6}")
    for r in results["rows"]:
        print(
            f"{r['window_s']:>5}s {r['mode']:<15} {r['decode']:<10} {r['ms_per_update']:>9.1f} "
            f"{r['speedup_vs_naive']:>7.2f}x {r['wer']:>6.3f}"
        )
    path = write_results("whisper_batching", results)
    plot(results, OUT / "whisper_batching.png")
    print(f"wrote {path} and {OUT / 'whisper_batching.png'}")


if __name__ == "__main__":
    main()

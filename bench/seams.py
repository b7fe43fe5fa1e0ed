"""Seams: the words lost where one final ends and the next begins without its pre-roll.

The worker's segmenter gives each utterance 400 ms of audio before its first voiced window (the pre-roll:
Silero scores a word's onset low, and a clipped onset costs the word; bench/README.md, "Segmenter policy
and prompts"), but never lets a segment start before the previous one ended. So a final cut at the
maximum utterance length, or one that follows the previous after a gap shorter than the trailing pad and
the pre-roll, starts with its onset clipped. This bench measures what giving those finals their pre-roll
back would change: each such final decoded again from ``pad`` before its start (never before the
previous final's start), and the words whose middle (by the final's word timings) lies in that overlap
dropped, as they belong to the previous final.

Every real track (bench/real_speech.py; ``--fetch`` there first) is cut by the worker's segmenter and
default policy with 0, 100, 200 and 300 ms of silence in front (where the cuts fall moves with it, so the
set gives more seams than its 11 finals), and each cut is decoded both ways in the worker's decode mode.
Prints the WER word-weighted over all cuts, the clipped finals and what changed; writes
bench/out/seams.json and seams.png.

``--long-cut-pause MS ...`` also cuts every track, at every lead, with ``PALAVER_VAD_LONG_CUT_PAUSE_MS`` at
each value (speech longer than the maximum cut at the first pause that long in its last third, as speech
resumes, instead of at the quietest point once the length runs out) and reports the WER and, per final,
when it is asked for after its last word (bench/real_speech.py's ``ask_after_last_word_ms``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import OUT, write_results
from bench.real_speech import (
    DATA,
    SOURCES,
    ask_delays,
    clean,
    decode_bucketed,
    load_track,
    segment_track,
    track_files,
    words_after,
)
from palaver.textmetrics import word_error_rate

LEADS_MS = (0, 100, 200, 300)
SAMPLE_RATE = 16000


def seam_clips(audio: np.ndarray, segments: list[Any], pad: int) -> list[tuple[np.ndarray, float, bool]]:
    """Per segment: (the clip to decode, seconds of it that belong to the previous final, clipped). A
    segment that starts where the previous one ended, less than ``pad`` before its speech, starts ``pad``
    before its speech instead (never before the previous segment's start)."""
    out, previous_start = [], 0
    for index, s in enumerate(segments):
        clipped = index > 0 and s.start_sample == segments[index - 1].end_sample and s.speech_start_sample - s.start_sample < pad
        start = max(previous_start, s.speech_start_sample - pad) if clipped else s.start_sample
        out.append((audio[start : s.end_sample], (s.start_sample - start) / SAMPLE_RATE, clipped))
        previous_start = s.start_sample
    return out


def measure_track(name: str, audio: np.ndarray, reference: str, engine: Any, pad: int,
                  long_cut_pauses: list[int] = ()) -> list[dict[str, Any]]:  # fmt: skip
    rows = []
    for lead_ms in LEADS_MS:
        led = np.concatenate([np.zeros(lead_ms * SAMPLE_RATE // 1000, np.float32), audio])
        segments, asked, _ = segment_track(led, "stateful")
        clips = seam_clips(led, segments, pad)
        plain = decode_bucketed(engine, [s.audio for s in segments])
        seamed = decode_bucketed(engine, [c for c, _, _ in clips])
        texts = {"plain": " ".join(f.text for f in plain),
                 "seamed": " ".join(words_after(f, overlap) if overlap else f.text
                                    for f, (_, overlap, _) in zip(seamed, clips, strict=True))}  # fmt: skip
        row = {"track": name, "lead_ms": lead_ms, "words": len(reference.split()), "finals": len(segments),
               "clipped": sum(c for _, _, c in clips),
               "ask_after_last_word_ms": ask_delays(_pieces(segments), plain, asked)}  # fmt: skip
        for pause_ms in long_cut_pauses:
            cut, cut_asked, _ = segment_track(led, "stateful", {"long_cut_pause_ms": pause_ms})
            finals = decode_bucketed(engine, [s.audio for s in cut])
            texts[f"pause{pause_ms}"] = " ".join(f.text for f in finals)
            row[f"ask_after_last_word_ms_pause{pause_ms}"] = ask_delays(_pieces(cut), finals, cut_asked)
        for label, text in texts.items():
            row[f"wer_{label}"] = round(word_error_rate(reference, clean(text)), 4)
            row[f"text_{label}"] = text
        print(f"{name:<26} lead {lead_ms:>3} ms: {row['finals']} finals, {row['clipped']} clipped; "
              f"WER {row['wer_plain']:.3f} -> {row['wer_seamed']:.3f}", flush=True)
        rows.append(row)
    return rows


def _pieces(segments: list[Any]) -> list[tuple[int, int, np.ndarray]]:
    return [(s.start_sample, s.end_sample, s.audio) for s in segments]


def asks(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    """Median, p90 and max of the per-final ask delays under ``key`` of all rows."""
    values = sorted(v for r in rows for v in r[key])
    return {"median": values[len(values) // 2], "p90": values[int(len(values) * 0.9)], "max": values[-1],
            "finals": len(values)}  # fmt: skip


def weighted(rows: list[dict[str, Any]], key: str) -> float:
    return round(sum(r[key] * r["words"] for r in rows) / sum(r["words"] for r in rows), 4)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    labels = [f"{r['track'][:14]}\n+{r['lead_ms']} ms" for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.45), 4))
    ax.bar(x - 0.2, [r["wer_plain"] for r in rows], 0.4, label="finals as cut")
    ax.bar(x + 0.2, [r["wer_seamed"] for r in rows], 0.4, label="clipped finals with their pre-roll")
    ax.set_xticks(x, labels, rotation=90, fontsize=7)
    ax.set_ylabel("WER")
    ax.set_title(f"Seams: {result['wer']['plain']:.3f} -> {result['wer']['seamed']:.3f} word-weighted, "
                 f"{result['clipped']} clipped finals of {result['finals']}")  # fmt: skip
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.seams", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--data", type=Path, default=DATA, help=f"where the recordings are (default {DATA})")
    parser.add_argument("--long-cut-pause", nargs="*", type=int, default=[], metavar="MS",
                        help="also cut with PALAVER_VAD_LONG_CUT_PAUSE_MS at each value, and report the WER and "
                        "when finals are asked for after their last word")  # fmt: skip
    args = parser.parse_args(argv)
    tracks = [t for _, ts in SOURCES.values() for t in ts]
    if any(not a.exists() for t in tracks for a, _ in track_files(t, args.data)):
        print(f"no recordings in {args.data}: run `python -m bench.real_speech --fetch` first", file=sys.stderr)
        return 2
    from palaver.settings import Settings
    from stt_workers.batched_whisper import BatchedWhisper

    settings = Settings()
    engine = BatchedWhisper(settings.model_dir, settings.whisper_compute_type, threads=2, decode_mode=settings.whisper_decode)
    pad = settings.vad_pad_ms * SAMPLE_RATE // 1000
    rows = []
    for track in tracks:
        audio, reference = load_track(track, args.data)
        rows += measure_track(track.name, audio, reference, engine, pad, args.long_cut_pause)
    labels = ["plain", "seamed", *(f"pause{ms}" for ms in args.long_cut_pause)]
    result = {"benchmark": "seams", "leads_ms": LEADS_MS, "pad_ms": settings.vad_pad_ms,
              "decode_mode": settings.whisper_decode, "rows": rows, "finals": sum(r["finals"] for r in rows),
              "clipped": sum(r["clipped"] for r in rows), "wer": {k: weighted(rows, f"wer_{k}") for k in labels},
              "ask_after_last_word_ms": {"plain": asks(rows, "ask_after_last_word_ms"),
                                         **{f"pause{ms}": asks(rows, f"ask_after_last_word_ms_pause{ms}")
                                            for ms in args.long_cut_pause}}}  # fmt: skip
    print(f"all cuts, word-weighted WER: finals as cut {result['wer']['plain']:.3f}, clipped finals with their "
          f"pre-roll {result['wer']['seamed']:.3f} ({result['clipped']} clipped of {result['finals']} finals)")  # fmt: skip
    for label, figures in result["ask_after_last_word_ms"].items():
        print(f"{label}: WER {result['wer'][label]:.3f}, final asked after its last word, ms: median "
              f"{figures['median']}, p90 {figures['p90']}, max {figures['max']} ({figures['finals']} finals)")  # fmt: skip
    path = write_results("seams", result)
    plot(result, OUT / "seams.png")
    print(f"wrote {path} and {OUT / 'seams.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

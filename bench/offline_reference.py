"""The offline reference for ``palaver bench stt``: each speaker's whole track transcribed at once with plain
faster-whisper, the same model directory, compute type and threads as the STT worker, and its WER against
the same script. The STT issue asks for streamed finals within 1.5 WER points of this.

The path is faster-whisper's ordinary offline one: ``WhisperModel.transcribe`` over the whole track, which
slides Whisper's 30 s window along the audio by its timestamps, conditioning each window on the previous
text, with the temperature fallback. Two choices: the beam size is the worker's (``PALAVER_WHISPER_BEAM_SIZE``,
default 1: greedy, which is how the batched worker decodes its finals), and VAD filtering is off (the track
is one speaker reading with short pauses; Silero's cuts would make the reference depend on a second VAD).

Transcripts are cached under bench/out/cache/ by a hash of the audio and the decoding options, so a rerun
on the same tracks costs nothing. The harness runs this before the timed phases, never beside them.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import OUT
from bench.speech import Track

WITHIN_POINTS = 1.5  # the bound: streamed WER at most this many points above offline


@dataclass(frozen=True)
class OfflineOptions:
    model_dir: str
    compute_type: str
    threads: int
    beam_size: int
    language: str
    device: str = "cpu"
    vad_filter: bool = False


def cache_key(pcm: np.ndarray, options: OfflineOptions) -> str:
    """Hash of the audio and of everything that changes the transcript (threads do not)."""
    decoding = {k: v for k, v in asdict(options).items() if k != "threads"}
    digest = hashlib.sha256(np.ascontiguousarray(pcm).tobytes())
    digest.update(json.dumps(decoding, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def compare(streamed_wer: float, offline_wer: float, within_points: float = WITHIN_POINTS) -> dict[str, Any]:
    """Streamed against offline WER, in points (1 point = 0.01 WER). ``within``: streamed is at most
    ``within_points`` worse; being better than offline also counts as within."""
    points = round((streamed_wer - offline_wer) * 100, 2)
    return {"offline_wer": round(offline_wer, 4), "wer_vs_offline_points": points,
            "within_offline_bound": points <= within_points}  # fmt: skip


def transcribe_tracks(tracks: list[Track], options: OfflineOptions, on_seconds: Callable[[float], None],
                      cache_dir: Path = OUT / "cache") -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per speaker: the offline transcript, its WER against the script, and whether it came from the cache.
    ``on_seconds`` gets the seconds of audio transcribed so far (cached tracks count at once)."""
    results: dict[str, dict[str, Any]] = {}
    model = None
    done = 0.0
    for track in tracks:
        path = cache_dir / f"offline-{cache_key(track.pcm, options)}.json"
        if path.exists():
            entry = json.loads(path.read_text())
            cached = True
        else:
            if model is None:
                from faster_whisper import WhisperModel

                model = WhisperModel(options.model_dir, device=options.device, compute_type=options.compute_type,
                                     cpu_threads=options.threads)  # fmt: skip
            started = time.monotonic()
            audio = track.pcm.astype(np.float32) / 32768.0
            segments, _ = model.transcribe(audio, language=options.language, beam_size=options.beam_size,
                                           vad_filter=options.vad_filter)  # fmt: skip
            texts = []
            for segment in segments:  # a generator: the decoding happens here, window by window
                texts.append(segment.text.strip())
                on_seconds(done + min(segment.end, track.seconds))
            entry = {"text": " ".join(t for t in texts if t), "seconds": round(track.seconds, 2),
                     "transcribe_s": round(time.monotonic() - started, 2)}  # fmt: skip
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(entry) + "\n")
            cached = False
        done += track.seconds
        on_seconds(done)
        results[track.speaker_id] = {**entry, "wer": round(track.wer(entry["text"]), 4),
                                     "cached": cached}  # fmt: skip
    return results


def mean_wer(per_speaker: dict[str, dict[str, Any]], tracks: list[Track]) -> float:
    """The offline WER of the first speakers (those of one N), averaged over speakers as the bench does for
    streamed finals."""
    return float(np.mean([per_speaker[t.speaker_id]["wer"] for t in tracks]))

"""Speech for the demo and the tests: hibari-tts (its voice ships in the wheel) resampled to 16 kHz."""

from __future__ import annotations

import numpy as np

from palaver.demo.script import Line, PlacedLine, place_lines

SAMPLE_RATE = 16000


class Voice:
    def __init__(self) -> None:
        from hibari import Hibari

        self._tts = Hibari()
        self._rate = self._tts.sample_rate

    def say(self, text: str, seed: int = 7) -> np.ndarray:
        """float32 16 kHz mono."""
        audio = resample(self._tts(text, seed=seed), self._rate, SAMPLE_RATE)
        return trim_silence(audio)


def trim_silence(audio: np.ndarray, level: float = 0.01) -> np.ndarray:
    """Drop leading and trailing near-silence, so a line's placement on the timeline is its speech."""
    loud = np.flatnonzero(np.abs(audio) >= level)
    return audio[loud[0] : loud[-1] + 1] if len(loud) else audio[:0]


def resample(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited resampling (windowed-sinc low-pass, then linear interpolation); good enough for speech."""
    if src_rate == dst_rate:
        return audio.astype(np.float32)
    if dst_rate < src_rate:
        cutoff = 0.5 * dst_rate / src_rate
        taps = np.arange(-32, 33)
        kernel = 2 * cutoff * np.sinc(2 * cutoff * taps) * np.hamming(len(taps))
        audio = np.convolve(audio, kernel / kernel.sum(), mode="same")
    positions = np.arange(0, len(audio) * dst_rate // src_rate) * (src_rate / dst_rate)
    return np.interp(positions, np.arange(len(audio)), audio).astype(np.float32)


def meeting_tracks(lines: tuple[Line, ...], voice: Voice) -> tuple[dict[str, np.ndarray], list[PlacedLine]]:
    """One int16 track per speaker, all the same length, each line at its place on the shared timeline."""
    clips = [voice.say(line.text, seed=i) for i, line in enumerate(lines)]
    placed = place_lines(lines, [len(c) * 1000 // SAMPLE_RATE for c in clips])
    total = max(p.end_ms for p in placed) + 1500
    tracks: dict[str, np.ndarray] = {}
    for clip, p in zip(clips, placed, strict=True):
        track = tracks.setdefault(p.speaker_id, np.zeros(total * SAMPLE_RATE // 1000, np.float32))
        at = p.start_ms * SAMPLE_RATE // 1000
        track[at : at + len(clip)] += clip[: len(track) - at]
    pcm = {s: (np.clip(t, -1, 1) * 32767).astype("<i2") for s, t in tracks.items()}
    return pcm, placed

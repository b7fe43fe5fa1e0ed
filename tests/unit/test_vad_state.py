"""Silero's recurrent state carried across a stream (stt_workers/vad.py, stt_workers/segmenter.py), with the
real model: probabilities do not depend on how the audio was framed, and a segmenter restarted at
``keep_from`` scores every window from then on exactly as the one before it did."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from palaver.settings import Settings
from stt_workers.local_transcriber import segmenter_policy
from stt_workers.segmenter import Segmenter, SegmenterPolicy
from stt_workers.vad import CONTEXT, WINDOW, SileroScorer

RATE = 16000


@pytest.fixture(scope="module")
def silero() -> SileroScorer:
    return SileroScorer()


def voice_like(seconds: float, seed: int = 7) -> np.ndarray:
    """Harmonics of a gliding 120-220 Hz pitch in syllable-rate bursts, with pauses and a little noise:
    audio on which Silero's probabilities rise and fall, so its state has something to carry."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 170 + 50 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    syllables = np.clip(np.sin(2 * np.pi * 4 * t), 0, None)
    phrases = (np.sin(2 * np.pi * 0.25 * t) > -0.3).astype(float)  # speech, then a pause of about 1.5 s
    audio = 0.3 * voiced * syllables * phrases + 0.003 * rng.standard_normal(len(t))
    return audio.astype(np.float32)


class Recording:
    """A scorer that records each window's start (from the audio it was given) and probability."""

    def __init__(self, scorer: Any) -> None:
        self.scorer, self.calls = scorer, 0
        self.probs: list[float] = []

    def __call__(self, windows: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        self.calls += 1
        probs, state = self.scorer(windows, state)
        self.probs += [float(p) for p in probs]
        return probs, state


def windows_of(audio: np.ndarray) -> np.ndarray:
    n = (len(audio) - CONTEXT) // WINDOW
    return np.stack([audio[i * WINDOW : i * WINDOW + CONTEXT + WINDOW] for i in range(n)])


def test_state_carried_across_calls_gives_the_probabilities_of_one_call(silero: SileroScorer) -> None:
    windows = windows_of(voice_like(6.0))
    whole, _ = silero(windows, None)
    carried, state, at = [], None, 0
    for size in [1, 3, 2, 7, 1, 40, 5] * 10:
        probs, state = silero(windows[at : at + size], state)
        carried += list(probs)
        at += size
    assert at >= len(windows)
    np.testing.assert_allclose(carried, whole, atol=1e-5)
    fresh = np.concatenate([silero(windows[i : i + 3], None)[0] for i in range(0, len(windows), 3)])
    assert np.abs(fresh - whole).max() > 0.05, "the state matters, so carrying it is what the test shows"
    assert whole.max() > 0.5 > whole.min(), "the audio has speech and silence for Silero"


def test_no_windows_keep_the_state(silero: SileroScorer) -> None:
    state = silero(windows_of(voice_like(1.0)), None)[1]
    probs, kept = silero(np.zeros((0, CONTEXT + WINDOW), np.float32), state)
    assert len(probs) == 0 and kept is state


def push_all(segmenter: Segmenter, audio: np.ndarray, sizes: list[int]) -> list[tuple[int, int, int]]:
    segments, at, i = [], 0, 0
    while at < len(audio):
        size = sizes[i % len(sizes)]
        segments += segmenter.push(audio[at : at + size])
        at, i = at + size, i + 1
    segments += segmenter.flush()
    return [(s.start_sample, s.end_sample, s.speech_start_sample) for s in segments]


def test_segmenter_probabilities_do_not_depend_on_frame_size(silero: SileroScorer) -> None:
    audio = voice_like(12.0)
    results = []
    for sizes in ([len(audio)], [1600], [320], [97, 4000, 513]):
        scorer = Recording(silero)
        bounds = push_all(Segmenter(scorer, SegmenterPolicy()), audio, sizes)
        results.append((scorer.probs, bounds))
    reference_probs, reference_bounds = results[0]
    assert len(reference_bounds) >= 2 and max(reference_probs) > 0.5
    for probs, bounds in results[1:]:
        np.testing.assert_allclose(probs, reference_probs, atol=1e-5)
        assert bounds == reference_bounds


# The dataclass's own policy, and the worker's (settings defaults: threshold 0.3, hysteresis 0.15, 400 ms
# pre-roll, 300 ms trailing pad)
POLICIES = {"plain": SegmenterPolicy(), "worker": segmenter_policy(Settings(), RATE)}


@pytest.mark.parametrize("policy_name", list(POLICIES))
@pytest.mark.parametrize("frame", [320, 1600])
def test_a_restart_at_keep_from_scores_like_the_segmenter_before_it(
    silero: SileroScorer, frame: int, policy_name: str
) -> None:
    """Each keep_from the first segmenter reported: a fresh segmenter there (a fresh VAD state) gives every
    window it scores the probability the first gave it, and emits the same segments from then on."""
    audio = voice_like(16.0)
    policy = POLICIES[policy_name]
    first = Recording(silero)
    original = Segmenter(first, policy)
    resume_points, emitted = [], []
    for at in range(0, len(audio), frame):
        emitted += [(s.start_sample, s.end_sample, s.speech_start_sample, len(resume_points))
                    for s in original.push(audio[at : at + frame])]  # fmt: skip
        resume_points.append(original.keep_from)
    by_start = {WINDOW + i * WINDOW: p for i, p in enumerate(first.probs)}  # the first window is at 512
    points = sorted(set(resume_points) - {0})
    assert len(points) >= 3, "keep_from moves on in every pause"
    for i, keep in enumerate(points):
        since = resume_points.index(keep)  # pushes before the worker could have committed it
        restarted = Recording(silero)
        bounds = push_all(Segmenter(restarted, policy, keep), audio[keep:], [frame])
        first_window = keep + CONTEXT
        assert first_window % WINDOW == 0
        again = [by_start[first_window + j * WINDOW] for j in range(len(restarted.probs))]
        np.testing.assert_allclose(restarted.probs, again, atol=1e-5)
        later = [b[:3] for b in emitted if b[3] > since]
        assert bounds[: len(later)] == later, f"restart at {keep} (point {i})"

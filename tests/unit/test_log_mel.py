"""The batched log-mel equals faster-whisper's per-clip FeatureExtractor on the same padded audio."""

import numpy as np
import pytest
from faster_whisper.feature_extractor import FeatureExtractor

from stt_workers.log_mel import cuda_torch, log_mel, log_mel_torch

SAMPLE_RATE = 16000


def speech_like(seconds: float, seed: int) -> np.ndarray:
    """Voiced syllables (a gliding pitch with harmonics under two formant bumps), short pauses and a little
    noise, at a speaking level."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voice = sum(np.sin(k * phase) * (np.exp(-(((k * 130 - 700) / 300) ** 2)) + 0.5 * np.exp(-(((k * 130 - 1800) / 400) ** 2)))
                for k in range(1, 30))  # fmt: skip
    syllables = (np.sin(2 * np.pi * 4 * t) > -0.3) * (np.sin(2 * np.pi * 0.4 * t + seed) > -0.6)
    return (0.1 * voice * syllables + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def padded_batch(clips: list[np.ndarray], frames: int) -> np.ndarray:
    audio = np.zeros((len(clips), frames * 160), np.float32)
    for row, clip in enumerate(clips):
        audio[row, : len(clip)] = clip
    return audio


def per_clip(audio: np.ndarray, frames: int) -> np.ndarray:
    extractor = FeatureExtractor()
    return np.stack([extractor(row)[:, :frames] for row in audio])


@pytest.mark.parametrize("kind", ["random", "speech-like"])
def test_the_batch_matches_the_per_clip_extractor(kind: str) -> None:
    rng = np.random.default_rng(7)
    lengths = (5.0, 1.3, 3.71, 0.02)  # one batch of mixed lengths, padded with silence to the longest
    if kind == "random":
        clips = [(0.2 * rng.standard_normal(int(s * SAMPLE_RATE))).astype(np.float32) for s in lengths]
    else:
        clips = [speech_like(s, seed) for seed, s in enumerate(lengths)]
    frames = 600  # 5 s and 1 s of padding, as BatchedWhisper pads a 5 s clip
    audio = padded_batch(clips, frames)
    batched = log_mel(audio, frames)
    assert batched.shape == (len(clips), 80, frames) and batched.dtype == np.float32
    assert batched.flags["C_CONTIGUOUS"]
    reference = per_clip(audio, frames)
    assert np.abs(batched - reference).max() < 1e-3
    # Bit for bit, in fact: the last bit of a feature can move an aligned word by a step, and the
    # timestamps decode mode promises the results it gave with the per-clip extractor.
    assert np.array_equal(batched, reference)
    assert np.ptp(batched[0]) > 1.0, "the clip is not flat: the comparison means something"


def test_a_batch_framed_in_slices_matches_too(monkeypatch: pytest.MonkeyPatch) -> None:
    import stt_workers.log_mel as module

    audio = padded_batch([speech_like(2.0, seed) for seed in range(5)], 250)
    whole = log_mel(audio, 250)
    monkeypatch.setattr(module, "_MAX_FRAME_SAMPLES", 1)  # one clip per slice
    assert np.array_equal(log_mel(audio, 250), whole)


def test_a_batch_must_be_two_dimensional() -> None:
    with pytest.raises(ValueError):
        log_mel(np.zeros(16000, np.float32), 100)


@pytest.mark.skipif(cuda_torch() is None, reason="needs torch with a CUDA device")
def test_the_gpu_path_matches_the_numpy_one() -> None:
    audio = padded_batch([speech_like(4.2, 1), speech_like(2.0, 2)], 500)
    on_gpu = log_mel_torch(audio, 500, "cuda:0")
    assert tuple(on_gpu.shape) == (2, 80, 500) and on_gpu.is_cuda and on_gpu.is_contiguous()
    assert np.abs(on_gpu.cpu().numpy() - log_mel(audio, 500)).max() < 1e-3

"""Whisper's log-mel spectrogram for a whole batch at once.

``log_mel`` gives, for each row of a batch of equally long clips, what faster-whisper's ``FeatureExtractor``
gives for that clip alone (its first ``frames`` frames): the same 160 zero samples appended, the same
reflect-padded 400-point periodic-Hann STFT with hop 160 (last frame dropped), the same 80-band Slaney mel
filterbank, and Whisper's ``log10``, clamp to 8 below the clip's own maximum and ``(x + 4) / 4``, bit for
bit. It frames the batch in strided views, takes one ``rfft`` per slice of clips and applies the filterbank
in one matmul call per slice, with no Python loop over frames or clips beyond the slices.

``log_mel_torch`` is the same computation in torch on a CUDA device (``torch.stft``), for a model on the
GPU: its result can go to CTranslate2 without leaving the device. torch is optional: only
``cuda_torch()`` imports it, and returns None where it (or CUDA) is missing.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
# Frame samples per slice of the batch (about one 6.5 s clip). The work is memory-bound: framing copies 400
# samples per 160, and on a 2-core host framing a whole batch of 8 or 128 5 s clips at once was measured up
# to 2x slower than slices that stay in the CPU's cache (bench/log_mel.py).
_MAX_FRAME_SAMPLES = 1 << 18


@functools.cache
def mel_filters() -> np.ndarray:
    """The (80, 201) float32 Slaney mel filterbank, faster-whisper's own."""
    from faster_whisper.feature_extractor import FeatureExtractor

    return FeatureExtractor.get_mel_filters(16000, N_FFT, n_mels=N_MELS).astype(np.float32)


@functools.cache
def _hann() -> np.ndarray:
    return np.hanning(N_FFT + 1)[:-1].astype(np.float32)  # periodic, as torch.hann_window


def log_mel(audio: np.ndarray, frames: int) -> np.ndarray:
    """The (batch, 80, frames) float32 log-mel of ``audio``, a (batch, samples) float32 array of clips
    already padded to one length, with ``frames`` at most ``samples // 160 + 1``. Row ``i`` equals
    ``FeatureExtractor()(audio[i])[:, :frames]``, bit for bit."""
    audio = np.asarray(audio, np.float32)
    if audio.ndim != 2:
        raise ValueError(f"log_mel takes a (batch, samples) array, not shape {audio.shape}")
    padded = np.pad(audio, ((0, 0), (0, HOP_LENGTH)))  # the extractor's own 160 zeros
    padded = np.pad(padded, ((0, 0), (N_FFT // 2, N_FFT // 2)), mode="reflect")
    per_clip = (padded.shape[1] - N_FFT) // HOP_LENGTH + 1
    step = max(1, _MAX_FRAME_SAMPLES // (per_clip * N_FFT))
    return np.concatenate(
        [_log_mel_rows(padded[i : i + step], frames) for i in range(0, len(padded), step)], axis=0
    )


def _log_mel_rows(padded: np.ndarray, frames: int) -> np.ndarray:
    windows = np.lib.stride_tricks.sliding_window_view(padded, N_FFT, axis=1)[:, ::HOP_LENGTH]
    # The per-clip extractor's own operations, in its order and layout (a (201, frames) view per clip, the
    # filterbank on the left), so that each row is bit for bit its result: a difference in the last bit
    # of the features can move a word's aligned time by one step.
    spectrum = np.fft.rfft(windows * _hann(), axis=-1).astype(np.complex64).transpose(0, 2, 1)[..., :-1]
    power = np.abs(spectrum) ** 2  # (batch, 201, frames + 1)
    mel = mel_filters() @ power  # one matmul call for every frame of every clip
    log_spec = np.log10(np.clip(mel, 1e-10, None))
    # The clamp is relative to each clip's maximum over all its frames, as the per-clip extractor's.
    log_spec = np.maximum(log_spec, log_spec.max(axis=(1, 2), keepdims=True) - 8.0)
    return np.ascontiguousarray(((log_spec + 4.0) / 4.0)[:, :, :frames])


@functools.cache
def cuda_torch() -> Any | None:
    """The ``torch`` module when it is installed and sees a CUDA device, else None (imported once)."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def log_mel_torch(audio: np.ndarray, frames: int, device: str) -> Any:
    """``log_mel`` computed by torch on ``device`` (e.g. ``"cuda:0"``): a contiguous (batch, 80, frames)
    float32 torch tensor left on that device, its computation finished (ready for another CUDA stream to
    read). Requires ``cuda_torch()`` to be a module; raises ``RuntimeError`` otherwise."""
    torch = cuda_torch()
    if torch is None:
        raise RuntimeError("log_mel_torch needs torch with CUDA")
    with torch.no_grad():
        samples = torch.from_numpy(np.asarray(audio, np.float32)).to(device)
        samples = torch.nn.functional.pad(samples, (0, HOP_LENGTH))
        window = torch.hann_window(N_FFT, device=device)  # periodic, as np.hanning(401)[:-1]
        # center=True pads 200 samples each side by reflection, as the numpy path does.
        spectrum = torch.stft(samples, N_FFT, HOP_LENGTH, window=window, center=True, pad_mode="reflect",
                              return_complex=True)[..., :-1]  # fmt: skip
        power = spectrum.abs() ** 2  # (batch, 201, frames + 1)
        mel = torch.from_numpy(mel_filters()).to(device) @ power
        log_spec = torch.clamp(mel, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)
        features = ((log_spec + 4.0) / 4.0)[:, :, :frames].contiguous()
        # torch queues its kernels on its own stream; CTranslate2 reads the tensor on another one.
        torch.cuda.current_stream(device).synchronize()
        return features

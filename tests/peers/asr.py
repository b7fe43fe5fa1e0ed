"""What the protocol peers share: Whisper tiny.en behind a lock, a frame energy VAD, and helpers."""

from __future__ import annotations

import asyncio
import threading
import uuid

import numpy as np

from palaver.settings import bundled_whisper_model_dir
from stt_workers.engine import Transcription
from stt_workers.whisper_engine import WhisperEngine

VOICE_LEVEL = 0.01  # frame RMS above this is speech; the synthesized test speech is clean


class PeerAsr:
    """One faster-whisper tiny.en shared by every peer of a test session; one decode at a time."""

    def __init__(self) -> None:
        self._engine = WhisperEngine(bundled_whisper_model_dir(), threads=2)
        self._lock = threading.Lock()

    def _transcribe(self, audio: np.ndarray, language: str) -> Transcription:
        with self._lock:
            return self._engine.transcribe(audio, language)

    async def transcribe(self, audio16k: np.ndarray, language: str = "en") -> Transcription:
        return await asyncio.to_thread(self._transcribe, audio16k, language)


def frame_voiced(frame: np.ndarray) -> bool:
    return bool(np.sqrt(np.mean(np.square(frame, dtype=np.float64))) >= VOICE_LEVEL) if len(frame) else False


def voiced_ms(audio: np.ndarray, sample_rate: int, frame_ms: int = 20) -> int:
    """How much of ``audio`` is speech, by frame energy."""
    n = sample_rate * frame_ms // 1000
    frames = audio[: len(audio) // n * n].reshape(-1, n)
    if not len(frames):
        return 0
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    return int(np.count_nonzero(rms >= VOICE_LEVEL)) * frame_ms


def pcm_to_float(pcm: bytes | bytearray) -> np.ndarray:
    return np.frombuffer(bytes(pcm), "<i2").astype(np.float32) / 32768.0


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"

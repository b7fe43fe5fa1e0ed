"""The interface every speech-to-text engine implements. Engines know audio and text, not Kafka."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float  # relative to the start of the decoded audio
    end_s: float
    probability: float


@dataclass(frozen=True)
class Transcription:
    text: str
    words: tuple[Word, ...]
    confidence: float


class SttEngine(Protocol):
    """Optionally ``multilingual: bool`` (absent: True). False for an English-only model, which decodes
    every language as English; the worker then reports ``language="en"`` on the stream's events."""

    name: str  # "whisper", ...
    model: str  # a label for the model, e.g. "tiny.en"

    def transcribe(self, audio: np.ndarray, language: str) -> Transcription:
        """Decode float32 16 kHz mono audio. Blocking and CPU-bound: callers run it off the event loop."""
        ...

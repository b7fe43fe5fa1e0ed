"""The interface of streaming speech-to-text engines (cloud services that take audio as it comes and
answer with interim and final results), beside the batch ``SttEngine`` of engine.py.

Times are in samples of the stream (16 kHz), so results map onto the meeting's media timeline the same way
Whisper's do: ``media_ms = stream_start_ms + sample * 1000 / sample_rate``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from stt_workers.engine import Word


@dataclass(frozen=True)
class RecognizedSpeech:
    """One result of a streaming engine. ``final`` False: an interim hypothesis of the open utterance
    (it may still change); True: the utterance is done and will not change."""

    final: bool
    start_sample: int  # where the utterance starts in the stream
    end_sample: int  # how far the result covers
    text: str
    words: tuple[Word, ...]  # word times in seconds relative to ``start_sample``
    confidence: float


RefusalScope = Literal["worker", "stream"]


class EngineError(RuntimeError):
    """The service refused the stream: not retried.

    ``scope`` says what the refusal concerns, as the engine reads the service's answer: ``"worker"`` (the
    default) for a refusal that every stream would meet (a bad key, no credit, a model or audio format the
    service does not take): the worker stops; ``"stream"`` for one that concerns a parameter of this stream
    only (its language): the worker gives up on that stream and goes on with the others. The message never
    holds a key."""

    def __init__(self, message: str, *, scope: RefusalScope = "worker") -> None:
        super().__init__(message)
        self.scope: RefusalScope = scope


class StreamingSession(Protocol):
    async def send(self, pcm: bytes) -> None:
        """PCM s16le mono at the stream's sample rate, contiguous with what was sent before."""
        ...

    async def finish(self) -> None:
        """End of the stream: flush, wait until every result is delivered, then close."""
        ...

    def results(self) -> AsyncIterator[RecognizedSpeech]:
        """Results in order, ending after ``finish`` (or raising EngineError)."""
        ...

    async def close(self) -> None:
        """Drop the stream now, without waiting for results: what is not delivered yet is lost (the caller
        resumes the stream elsewhere from ``settled_sample``)."""
        ...

    @property
    def settled_sample(self) -> int:
        """A stream sample before which the session delivers nothing more, once the results already taken
        from ``results()`` are handled: the start of the open utterance, else the end of the last final (or
        of silence the service has finished with). A new session opened there (``first_sample``) and sent
        the audio from there on yields every result still owed. It starts at ``first_sample`` and advances
        only as ``results()`` is iterated, so a consumer that reads it never passes a result it has not
        handled."""
        ...


class StreamingEngine(Protocol):
    name: str
    model: str

    async def open(self, sample_rate: int, language: str, first_sample: int = 0) -> StreamingSession:
        """Open one streaming session for one audio stream; ``first_sample`` is the stream position of the
        first audio sent (results are reported in stream positions)."""
        ...

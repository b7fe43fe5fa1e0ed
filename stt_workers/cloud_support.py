"""Small pieces shared by the cloud streaming engines: keeping API keys out of logs and exception messages,
the buffer of audio a reconnect must resend, retry delays, and a streaming resampler.

Nothing here does I/O.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from math import gcd
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from stt_workers.streaming import RecognizedSpeech

_SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "sec-websocket-protocol", "openai-api-key"})
# Services echo a masked key in their error texts ("sk-abc***...wxyz"): drop any token with a run of stars.
_MASKED_KEY = re.compile(r"\S*\*{3,}\S*")
REDACTED = "[REDACTED]"


def redact(text: str, *secrets: str) -> str:
    """``text`` without the given secrets and without masked-key echoes."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return _MASKED_KEY.sub(REDACTED, text)


class HeaderRedactionFilter(logging.Filter):
    """Masks credential headers in the ``websockets`` handshake records (``"> %s: %s"`` at DEBUG level)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and str(args[0]).lower() in _SENSITIVE_HEADERS:
            scheme, sep, _ = str(args[1]).partition(" ")
            record.args = (args[0], f"{scheme} {REDACTED}" if sep else REDACTED)
        return True


def redacting_logger(name: str) -> logging.Logger:
    """A logger to hand to ``websockets.connect(logger=...)``: the handshake's headers reach it masked."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, HeaderRedactionFilter) for f in logger.filters):
        logger.addFilter(HeaderRedactionFilter())
    return logger


def retry_delays(attempts: int = 6, first_s: float = 0.2, max_s: float = 5.0) -> list[float]:
    """Pauses before each reconnect attempt; when they run out the engine gives up."""
    return [min(max_s, first_s * 2**i) for i in range(attempts)]


class PcmBuffer:
    """PCM s16le mono audio of one stream from ``start`` (a stream sample) to ``end``: what a reconnect may
    have to send again. ``trim`` drops what a service has finished with."""

    def __init__(self, start: int) -> None:
        self.start = start
        self._data = bytearray()

    @property
    def end(self) -> int:
        return self.start + len(self._data) // 2

    def append(self, pcm: bytes) -> None:
        self._data += pcm

    def trim(self, before: int) -> None:
        cut = min(max(0, before - self.start), len(self._data) // 2)
        del self._data[: cut * 2]
        self.start += cut

    def slice(self, begin: int, end: int | None = None) -> bytes:
        """Audio from ``begin`` to ``end`` (stream samples), clipped to what is held."""
        lo = max(0, begin - self.start)
        hi = len(self._data) // 2 if end is None else max(lo, min(end - self.start, len(self._data) // 2))
        return bytes(self._data[lo * 2 : hi * 2])


class LinearResampler:
    """Streaming linear-interpolation resampler for float32 audio. Output sample k sits at input position
    ``k * src / dst``; state carries across chunks, so chunking does not change the output. Plenty for speech
    going up in rate (16 kHz -> 24 kHz), where no low-pass is needed."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        g = gcd(src_rate, dst_rate)
        self._up, self._down = dst_rate // g, src_rate // g
        self._prev: np.ndarray = np.zeros(0, np.float32)  # the last input sample, when there is one
        self._consumed = 0  # input samples seen
        self._next_out = 0

    def process(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros(0, np.float32)
        buf = np.concatenate([self._prev, x.astype(np.float32, copy=False)])
        base = self._consumed - len(self._prev)  # absolute input index of buf[0]
        last = self._consumed + len(x) - 1
        k = np.arange(self._next_out, last * self._up // self._down + 1, dtype=np.int64)
        num = k * self._down
        idx = num // self._up - base
        frac = ((num % self._up) / self._up).astype(np.float32)
        out = buf[idx] * (1 - frac) + buf[np.minimum(idx + 1, len(buf) - 1)] * frac
        self._next_out = int(k[-1]) + 1 if len(k) else self._next_out
        self._prev = buf[-1:]
        self._consumed += len(x)
        return out.astype(np.float32)


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, "<i2").astype(np.float32) / 32768.0


def float_to_pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1.0, 1.0) * 32767).astype("<i2").tobytes()


END_OF_RESULTS = object()  # put on a session's result queue when the stream is over


@dataclass(frozen=True)
class Settled:
    """Put on a session's result queue after the results it covers: the session will deliver nothing that
    starts before ``sample``. ``drain`` passes it on only once every result before it was taken."""

    sample: int


async def drain(queue: asyncio.Queue[object], settle: Callable[[int], None] | None = None) -> AsyncIterator[object]:
    """A session's results in order until END_OF_RESULTS; an exception put on the queue is raised.
    ``Settled`` marks are not yielded: ``settle`` gets them when the consumer asks for the next result,
    that is after it has handled every result before the mark."""
    while True:
        item = await queue.get()
        if item is END_OF_RESULTS:
            return
        if isinstance(item, BaseException):
            raise item
        if isinstance(item, Settled):
            if settle is not None:
                settle(item.sample)
            continue
        yield item


class SettledResults:
    """The results side of a streaming session: ``results()`` drains the session's queue in order, and
    ``settled_sample`` follows the ``Settled`` marks the consumer has passed (the session's resume point).
    A session sets ``_queue`` and ``_settled`` (its first sample) before use."""

    _queue: asyncio.Queue[object]
    _settled: int

    def results(self) -> AsyncIterator[RecognizedSpeech]:
        return drain(self._queue, self._settle)  # type: ignore[return-value]

    @property
    def settled_sample(self) -> int:
        return self._settled

    def _settle(self, sample: int) -> None:
        self._settled = max(self._settled, sample)

"""The ingest wire protocol, as pure functions. See docs/ingest-protocol.md.

Client -> server: a text header ``{"sample_rate":16000,"encoding":"pcm_s16le","channels":1}`` (optional
``"start_sample": N`` to resume after a reconnect, optional ``"language": "de"`` for the stream's spoken
language), then binary frames of 20-250 ms of audio (only the last one before ``end`` may be shorter), then
the text ``{"type":"end"}``. Server -> client: ``{"type":"ready","first_sample":F,"stream_start_ms":T,
"limits":{...}}`` once the header is accepted, ``{"type":"ack","samples":N}`` once the stream's first N samples are durable in Kafka, and a
close: 1000 after ``end`` when everything is durable, 4xxx with a reason on bad input, 1013 (try again
later; the reason ends in ``retry after N s``) when the process holds its most streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from palaver import admission
from palaver.auth import tickets
from palaver.languages import is_language

SUPPORTED_SAMPLE_RATES = (16000,)
SUPPORTED_ENCODINGS = ("pcm_s16le",)
MIN_FRAME_MS = 20
MAX_FRAME_MS = 250
BYTES_PER_SAMPLE = 2
# The largest WebSocket message the server reads (uvicorn's ws_max_size, 16 MiB by default; a larger one
# closes with 1009 before the application sees it): 8x the largest legal frame (250 ms at the highest
# supported rate, 8000 bytes), so the common mistake, frames of 0.5-2 s, still gets 4005 and a reason
# that says what is wrong, while no client makes the server hold megabytes.
MAX_MESSAGE_BYTES = 8 * max(SUPPORTED_SAMPLE_RATES) * MAX_FRAME_MS // 1000 * BYTES_PER_SAMPLE


class CloseCode:
    BAD_IDS = 4000
    BAD_HEADER = 4001
    UNSUPPORTED_FORMAT = 4002
    BINARY_BEFORE_HEADER = 4003
    ODD_FRAME = 4004
    FRAME_TOO_LARGE = 4005
    BAD_CONTROL = 4006
    FRAME_TOO_SMALL = 4007
    IDLE = 4008  # nothing received for PALAVER_INGEST_IDLE_S (as HTTP 408)
    STREAM_BUSY = 4009
    MEETING_FULL = 4010
    SERVER_FULL = admission.TRY_AGAIN_LATER  # 1013: the process holds its most streams; the reason says when to retry
    STREAM_TOO_LONG = 4013  # PALAVER_MAX_STREAM_S reached (as HTTP 413)
    TOO_FAST = 4029  # sustained send rate above PALAVER_INGEST_MAX_SPEED (as HTTP 429)
    UNAUTHENTICATED = tickets.UNAUTHENTICATED  # no ticket, or a forged, expired or used one
    FORBIDDEN = tickets.FORBIDDEN  # a ticket for another meeting or socket
    BROKER_UNAVAILABLE = 1011


class ProtocolError(Exception):
    """Bad input on one stream: close that socket with ``code`` and ``reason``; nothing else is affected."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason.encode()[:123].decode(errors="ignore")  # a close reason fits in 123 bytes


@dataclass(frozen=True, slots=True)
class StreamFormat:
    sample_rate: int
    encoding: str
    channels: int
    start_sample: int = 0
    language: str | None = None  # a Whisper language code; None: the STT worker's default

    @property
    def max_frame_bytes(self) -> int:
        return self.sample_rate * MAX_FRAME_MS // 1000 * BYTES_PER_SAMPLE * self.channels

    @property
    def min_frame_samples(self) -> int:
        return self.sample_rate * MIN_FRAME_MS // 1000


def parse_header(text: str) -> StreamFormat:
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError(CloseCode.BAD_HEADER, "first message must be a JSON header") from None
    if not isinstance(obj, dict):
        raise ProtocolError(CloseCode.BAD_HEADER, "header must be a JSON object")
    missing = [k for k in ("sample_rate", "encoding", "channels") if k not in obj]
    if missing:
        raise ProtocolError(CloseCode.BAD_HEADER, f"header is missing {', '.join(missing)}")
    rate, encoding, channels = obj["sample_rate"], obj["encoding"], obj["channels"]
    start = obj.get("start_sample", 0)
    if encoding not in SUPPORTED_ENCODINGS:
        raise ProtocolError(CloseCode.UNSUPPORTED_FORMAT, f"unsupported encoding {encoding!r}; use pcm_s16le")
    if type(rate) is not int or rate not in SUPPORTED_SAMPLE_RATES:
        raise ProtocolError(CloseCode.UNSUPPORTED_FORMAT, f"unsupported sample_rate {rate!r}; use 16000")
    if type(channels) is not int or channels != 1:
        raise ProtocolError(CloseCode.UNSUPPORTED_FORMAT, f"unsupported channels {channels!r}; use 1 (mono)")
    if type(start) is not int or start < 0:
        raise ProtocolError(CloseCode.BAD_HEADER, "start_sample must be a non-negative integer")
    language = obj.get("language")
    if language is not None and not is_language(language):
        shown = language[:16] if isinstance(language, str) else language
        raise ProtocolError(
            CloseCode.BAD_HEADER, f"unknown language {shown!r}: use a Whisper language code (lowercase, e.g. en, de)"
        )
    return StreamFormat(sample_rate=rate, encoding=encoding, channels=channels, start_sample=start,
                        language=language)  # fmt: skip


def check_frame(size: int, fmt: StreamFormat) -> int:
    """Validate a binary frame's byte count; return its number of samples."""
    if size == 0 or size % (BYTES_PER_SAMPLE * fmt.channels):
        raise ProtocolError(CloseCode.ODD_FRAME, f"frame of {size} bytes is not a whole number of samples")
    if size > fmt.max_frame_bytes:
        raise ProtocolError(
            CloseCode.FRAME_TOO_LARGE, f"frame of {size} bytes exceeds {MAX_FRAME_MS} ms ({fmt.max_frame_bytes} B)"
        )
    return size // (BYTES_PER_SAMPLE * fmt.channels)


def check_after_short_frame(short_samples: int | None, fmt: StreamFormat) -> None:
    """Called for a frame or message that follows a frame of ``short_samples`` (None: the frame before was
    not short). A frame shorter than MIN_FRAME_MS is legal only as the last one before ``end`` (or before
    the socket goes); anything else after it raises FRAME_TOO_SMALL."""
    if short_samples is not None:
        ms = short_samples * 1000 / fmt.sample_rate
        raise ProtocolError(
            CloseCode.FRAME_TOO_SMALL,
            f"frame of {short_samples} samples ({ms:g} ms) is shorter than {MIN_FRAME_MS} ms and not the last",
        )


def is_short_frame(samples: int, fmt: StreamFormat) -> bool:
    return samples < fmt.min_frame_samples


def parse_control(text: str) -> str:
    """A text message after the header; returns its type. Only ``end`` is defined."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ProtocolError(CloseCode.BAD_CONTROL, "text messages must be JSON") from None
    kind = obj.get("type") if isinstance(obj, dict) else None
    if kind != "end":
        raise ProtocolError(CloseCode.BAD_CONTROL, f"unknown control message {kind!r}")
    return kind


def ack_message(samples: int) -> str:
    return orjson.dumps({"type": "ack", "samples": samples}).decode()


def ready_message(first_sample: int, stream_start_ms: int, limits: dict[str, float | int] | None = None) -> str:
    """Sent once the header is accepted: where this connection's audio sits in the stream (acks count the
    stream's samples), where the stream sits on the meeting's timeline, and the limits the connection is
    held to (``IngestLimits.wire``), so a client can pace itself within them."""
    body: dict[str, object] = {"type": "ready", "first_sample": first_sample, "stream_start_ms": stream_start_ms}
    if limits is not None:
        body["limits"] = limits
    return orjson.dumps(body).decode()

"""Raw PCM audio in the Kafka value; everything else in headers, so a frame costs no JSON or base64."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from palaver.languages import is_language

AUDIO_EVENT = "audio.frame"
BYTES_PER_SAMPLE = 2  # pcm_s16le, mono


class FrameHeaderError(ValueError):
    """A Kafka message on the audio topic that is not a valid audio frame."""


@dataclass(frozen=True, slots=True)
class AudioFrameV1:
    # Its name and version, as the JSON events carry them in their ``event`` and ``version`` fields.
    EVENT: ClassVar[str] = AUDIO_EVENT
    VERSION: ClassVar[int] = 1

    meeting_id: str
    speaker_id: str
    stream_id: str
    sample_rate: int
    first_sample: int  # position of this frame's first sample in its stream
    stream_start_ms: int
    pcm: bytes
    # The stream's spoken language (a Whisper code) when its client chose one; None: the worker's default.
    # On every frame, so a worker that takes a stream over mid-way, after its stream.started, still knows it.
    language: str | None = None
    # The ingest's id of the connection that took the frame (``StreamStartedV1.connection``); None from
    # older producers. Constant per connection, so it costs the ingest nothing per frame.
    connection: str | None = None

    @property
    def num_samples(self) -> int:
        return len(self.pcm) // BYTES_PER_SAMPLE

    @property
    def end_sample(self) -> int:
        return self.first_sample + self.num_samples

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        headers = [
            ("event", AUDIO_EVENT.encode()),
            ("version", b"1"),
            ("meeting_id", self.meeting_id.encode()),
            ("speaker_id", self.speaker_id.encode()),
            ("stream_id", self.stream_id.encode()),
            ("encoding", b"pcm_s16le"),
            ("channels", b"1"),
            ("sample_rate", str(self.sample_rate).encode()),
            ("first_sample", str(self.first_sample).encode()),
            ("stream_start_ms", str(self.stream_start_ms).encode()),
        ]
        if self.language is not None:  # optional: frames without it read as before
            headers.append(("language", self.language.encode()))
        if self.connection is not None:
            headers.append(("connection", self.connection.encode()))
        return headers

    @classmethod
    def from_kafka(cls, value: bytes, headers: dict[str, bytes]) -> AudioFrameV1:
        try:
            if headers.get("version") != b"1" or headers.get("encoding") != b"pcm_s16le":
                raise FrameHeaderError("unsupported audio frame version or encoding")
            if len(value) % BYTES_PER_SAMPLE:
                raise FrameHeaderError("odd number of PCM bytes")
            language = headers["language"].decode() if "language" in headers else None
            if language is not None and not is_language(language):
                raise FrameHeaderError(f"unknown language {language[:16]!r}")
            return cls(
                meeting_id=headers["meeting_id"].decode(),
                speaker_id=headers["speaker_id"].decode(),
                stream_id=headers["stream_id"].decode(),
                sample_rate=int(headers["sample_rate"]),
                first_sample=int(headers["first_sample"]),
                stream_start_ms=int(headers["stream_start_ms"]),
                pcm=value,
                language=language,
                connection=headers["connection"].decode() if "connection" in headers else None,
            )
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            if isinstance(exc, FrameHeaderError):
                raise
            raise FrameHeaderError(f"bad audio frame headers: {exc!r}") from exc


def event_type(headers: dict[str, bytes]) -> str:
    """Messages on the audio topic are frames (raw value) or stream lifecycle events (JSON value)."""
    return headers.get("event", b"").decode(errors="replace")

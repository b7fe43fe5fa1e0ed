"""What a dead letter is, in pure functions: the provenance headers written with it, reading them back,
the headers of its replayed copy, the record that remembers a replay, and its text for people.

A dead letter is the bad record itself, key, value and headers byte for byte, followed by ``dlq.*``
headers. When a record carries a ``dlq.*`` header more than once (a replayed record that failed again),
the last one is the newest.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

Headers = list[tuple[str, bytes]]

PREFIX = "dlq."
SOURCE_TOPIC = "dlq.topic"
SOURCE_PARTITION = "dlq.partition"
SOURCE_OFFSET = "dlq.offset"
ERROR_CLASS = "dlq.error.class"
ERROR_MESSAGE = "dlq.error.message"
SERVICE = "dlq.service"
TIME = "dlq.time"  # when it was dead-lettered, ISO 8601 UTC
REPLAYED_FROM = "dlq.replayed.from"  # on a replayed record: "<dlq topic>@<dlq offset>"
LEGACY_REASON = "dlq.reason"  # written before error class and message were apart

MAX_ERROR_MESSAGE_BYTES = 2000
DEFAULT_ERROR_CLASS = "InvalidMessage"  # an error given as text, with no class named


def describe_error(error: BaseException | str, error_class: str | None = None) -> tuple[str, str]:
    """(error class, message) of a processing failure: an exception names its own class unless
    ``error_class`` overrides it; a text error is ``error_class`` or ``InvalidMessage``."""
    if isinstance(error, BaseException):
        return error_class or type(error).__name__, str(error)
    return error_class or DEFAULT_ERROR_CLASS, error


def utc_text(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def bounded_utf8(text: str, limit: int = MAX_ERROR_MESSAGE_BYTES) -> bytes:
    """``text`` in UTF-8, cut to at most ``limit`` bytes on a character boundary, ``…`` marking a cut."""
    encoded = text.encode()
    if len(encoded) <= limit:
        return encoded
    return encoded[: limit - 3].decode(errors="ignore").encode() + "…".encode()


def dead_letter_headers(
    headers: Iterable[tuple[str, bytes]], topic: str, partition: int, offset: int, error_class: str,
    error_message: str, service: str, epoch_s: float,
) -> Headers:  # fmt: skip
    """The record's own headers, unchanged and first, then its provenance."""
    return [
        *headers,
        (SOURCE_TOPIC, topic.encode()),
        (SOURCE_PARTITION, str(partition).encode()),
        (SOURCE_OFFSET, str(offset).encode()),
        (ERROR_CLASS, error_class.encode()),
        (ERROR_MESSAGE, bounded_utf8(error_message)),
        (SERVICE, service.encode()),
        (TIME, utc_text(epoch_s).encode()),
    ]


def own_headers(headers: Iterable[tuple[str, bytes]]) -> Headers:
    """The headers the record had before any dead-lettering or replay (every ``dlq.*`` header dropped)."""
    return [(k, v) for k, v in headers if not k.startswith(PREFIX)]


def replay_headers(headers: Iterable[tuple[str, bytes]], dlq_topic: str, dlq_offset: int) -> Headers:
    return [*own_headers(headers), (REPLAYED_FROM, f"{dlq_topic}@{dlq_offset}".encode())]


@dataclass(frozen=True)
class DeadLetter:
    """One record of a DLQ topic (one partition: a DLQ offset names it) and its provenance."""

    dlq_topic: str
    dlq_offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers
    source_topic: str | None
    source_partition: int | None
    source_offset: int | None
    service: str
    error_class: str
    error_message: str
    time: str

    @property
    def source(self) -> str:
        return f"{self.source_topic or '?'}[{_or_q(self.source_partition)}]@{_or_q(self.source_offset)}"


def parse_dead_letter(dlq_topic: str, dlq_offset: int, key: bytes | None, value: bytes | None,
                      headers: Sequence[tuple[str, bytes]], timestamp_ms: int) -> DeadLetter:  # fmt: skip
    """A DLQ record read back. Missing provenance reads as None or "?" (a record some other tool wrote);
    a record without ``dlq.time`` is dated by its Kafka timestamp."""
    found = {k: v.decode(errors="replace") for k, v in headers if k.startswith(PREFIX) and v is not None}
    return DeadLetter(
        dlq_topic=dlq_topic,
        dlq_offset=dlq_offset,
        key=key,
        value=value,
        headers=list(headers),
        source_topic=found.get(SOURCE_TOPIC),
        source_partition=_int(found.get(SOURCE_PARTITION)),
        source_offset=_int(found.get(SOURCE_OFFSET)),
        service=found.get(SERVICE, "?"),
        error_class=found.get(ERROR_CLASS, "?"),
        error_message=found.get(ERROR_MESSAGE, found.get(LEGACY_REASON, "")),
        time=found.get(TIME) or utc_text(timestamp_ms / 1000),
    )


@dataclass(frozen=True)
class ReplayMark:
    """The replay log's record that a dead letter was sent back, and where its copy landed."""

    dlq_topic: str
    dlq_offset: int
    topic: str
    partition: int
    offset: int
    time: str

    @property
    def key(self) -> bytes:
        return replay_key(self.dlq_topic, self.dlq_offset)

    def encode(self) -> bytes:
        return orjson.dumps(self.__dict__)

    @classmethod
    def decode(cls, value: bytes) -> ReplayMark:
        return cls(**orjson.loads(value))


def replay_key(dlq_topic: str, dlq_offset: int) -> bytes:
    return f"{dlq_topic}@{dlq_offset}".encode()


# --- text for people -------------------------------------------------------------------------------------

LIST_HEADER = f"{'OFFSET':>8}  {'SOURCE':<32} {'SERVICE':<10} {'ERROR':<20} {'DEAD-LETTERED':<24}  {'REPLAYED':<9} MESSAGE"


def list_line(letter: DeadLetter, mark: ReplayMark | None, message_chars: int = 60) -> str:
    message = " ".join(letter.error_message.split())
    if len(message) > message_chars:
        message = message[: message_chars - 1] + "…"
    replayed = "yes" if mark else "no"
    return (f"{letter.dlq_offset:>8}  {letter.source:<32} {letter.service:<10} {letter.error_class:<20} "
            f"{letter.time:<24}  {replayed:<9} {message}")  # fmt: skip


def show_text(letter: DeadLetter, mark: ReplayMark | None, hex_bytes: int = 512) -> str:
    """The whole dead letter: provenance, error, replay, key, every header, the value (pretty JSON, else a
    hex dump of its first ``hex_bytes`` bytes and its size)."""
    lines = [
        f"dead letter {letter.dlq_topic}@{letter.dlq_offset}",
        f"  source:         {letter.source}",
        f"  service:        {letter.service}",
        f"  dead-lettered:  {letter.time}",
        f"  error:          {letter.error_class}: {letter.error_message}",
        f"  replayed:       {f'to {mark.topic}[{mark.partition}]@{mark.offset} at {mark.time}' if mark else 'no'}",
        f"key: {_bytes_text(letter.key)}",
        f"headers ({len(letter.headers)}):",
        *(f"  {name}: {_bytes_text(value)}" for name, value in letter.headers),
    ]
    lines.extend(_value_lines(letter.value, hex_bytes))
    return "\n".join(lines)


def _value_lines(value: bytes | None, hex_bytes: int) -> list[str]:
    if value is None:
        return ["value: null (a tombstone)"]
    try:
        parsed = json.loads(value)
    except ValueError:
        shown = value[:hex_bytes]
        more = f", first {len(shown)} shown" if len(shown) < len(value) else ""
        dump = [f"  {i:08x}  {shown[i : i + 16].hex(' ')}" for i in range(0, len(shown), 16)]
        return [f"value: {len(value)} bytes, not JSON{more}:", *dump]
    pretty = json.dumps(parsed, indent=2, ensure_ascii=False)
    return [f"value: {len(value)} bytes of JSON:", *(f"  {line}" for line in pretty.splitlines())]


def _bytes_text(data: bytes | None) -> str:
    if data is None:
        return "null"
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return f"0x{data.hex()} ({len(data)} bytes)"
    return text if text.isprintable() else repr(text)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _or_q(number: int | None) -> str:
    return "?" if number is None else str(number)

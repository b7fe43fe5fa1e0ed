"""The streaming clients' ack log: what the server acknowledged as durable, as the client saw it.

A JSON-lines file the streaming clients (``palaver demo --client-log FILE``, ``palaver bench ingest
--client-log FILE``) append to, one line per event of a connection:

- ``{"event": "ready", "meeting_id", "stream_id", "connection", "first_sample", "at_ms"}``: the server
  accepted the header; this connection's audio starts at stream sample ``first_sample``;
- ``{"event": "ack", ..., "samples": N}``: the server acknowledged the stream's first N samples, so this
  connection's samples ``[first_sample, N)`` are durable in Kafka;
- ``{"event": "closed", ..., "close_code", "acked"}``: how the connection ended.

``connection`` is the client's own id for one socket (a reconnect is a new connection of the same stream).
``palaver check`` reads it (``acked_ranges``): audio a client was told is durable must be on the audio
topic. Each line is one ``write`` on a file opened with ``O_APPEND``, so processes and tasks sharing a
file never interleave within a line, and a line is in the file (the page cache) once the ack is taken: a
client killed after an ack still leaves that ack in the log. Cheap: an ack comes at most every 200 ms per
stream.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import orjson


class AckLog:
    """An open ack log; ``connection`` starts the record of one socket. Close it when done."""

    def __init__(self, path: Path):
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def connection(self, meeting_id: str, stream_id: str) -> ConnectionLog:
        return ConnectionLog(self, meeting_id, stream_id, secrets.token_hex(6))

    def write(self, record: dict[str, object]) -> None:
        os.write(self._fd, orjson.dumps(record) + b"\n")

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> AckLog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass
class ConnectionLog:
    """The lines of one connection of one stream."""

    log: AckLog
    meeting_id: str
    stream_id: str
    connection: str
    acked: int = 0

    def _write(self, event: str, **fields: object) -> None:
        self.log.write({"event": event, "meeting_id": self.meeting_id, "stream_id": self.stream_id,
                        "connection": self.connection, **fields, "at_ms": int(time.time() * 1000)})  # fmt: skip

    def ready(self, first_sample: int) -> None:
        self.acked = first_sample
        self._write("ready", first_sample=first_sample)

    def ack(self, samples: int) -> None:
        self.acked = max(self.acked, samples)
        self._write("ack", samples=samples)

    def closed(self, close_code: int) -> None:
        self._write("closed", close_code=close_code, acked=self.acked)


class AckLogError(ValueError):
    """A line of an ack log that is not one of its records; the message names the line."""


@dataclass(frozen=True)
class AckedRange:
    """What one connection of a stream was told is durable: stream samples ``[first_sample, acked)``."""

    stream_id: str
    connection: str
    first_sample: int
    acked: int


_SAMPLE_FIELD = {"ready": "first_sample", "ack": "samples"}


def acked_ranges(lines: Iterable[str | bytes], meeting_id: str) -> list[AckedRange]:
    """The acknowledged ranges of ``meeting_id``'s connections in an ack log's lines (other meetings' lines
    are passed over; blank lines too). A connection's range runs from its ``ready``'s first sample to its
    highest ack; one without an ack claims nothing. Raises AckLogError for a line that is not a record, and
    for an ack of a connection whose ``ready`` came before it in no line."""
    first: dict[tuple[str, str], int] = {}
    acked: dict[tuple[str, str], int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
            if record["meeting_id"] != meeting_id:
                continue
            key, event = (str(record["stream_id"]), str(record["connection"])), record["event"]
            sample = int(record[_SAMPLE_FIELD[event]]) if event in _SAMPLE_FIELD else 0
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise AckLogError(f"line {number}: not an ack log record ({type(exc).__name__}: {exc})") from None
        if event == "ready":
            first[key] = sample
        elif event == "ack":
            if key not in first:
                raise AckLogError(f"line {number}: an ack of connection {key[1]} before its ready")
            acked[key] = max(acked.get(key, 0), sample)
        elif event != "closed":
            raise AckLogError(f"line {number}: unknown event {str(event)[:32]!r}")
    return [AckedRange(stream, connection, first[(stream, connection)], samples)
            for (stream, connection), samples in acked.items() if samples > first[(stream, connection)]]  # fmt: skip

"""The audio topic of one meeting against what its clients were told: lost and duplicated audio.

A stream's audio is its frames on the topic, each at a stream sample (``first_sample``). Its connections
are numbered by their ``stream.started`` records, in the partition's order (a stream's records all go to
one partition); a frame and a ``stream.stopped`` belong to the connection their ``connection`` id names
(a connection's last frames and stop may come after the next connection's start when the stream moved to
another ingest process), or, without one (older producers), to the last connection started before them.
A connection's ``stream.stopped`` says up to which sample the ingest made its audio durable (what it
acknowledged).

- ``acked audio lost``: samples a client's ack log says were acknowledged (``palaver.ack_log``) that no
  frame holds;
- ``audio lost``: samples inside a connection, from its start to its stop's end sample, that no frame holds
  (without a client log: the server's own word, which the client heard as acks);
- ``audio duplicated``: samples of a stream that two frames hold, unless it is a resume sending again what
  it had sent: the same frame (same samples, same PCM) in another connection. The protocol allows that (the
  client resends everything after the last ack it got; the STT workers drop audio they have by its
  position), so it is a note, not a finding. The same samples twice in one connection, with other audio, or
  in frames cut differently are findings.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from palaver.ack_log import AckedRange
from palaver.check.intervals import Range, missing, union
from palaver.check.report import ACKED_AUDIO_LOST, AUDIO_DUPLICATED, AUDIO_LOST, Finding, samples_text
from palaver.events import DecodeError, StreamStartedV1, StreamStoppedV1, decode
from palaver.events.audio_frame_v1 import AUDIO_EVENT, BYTES_PER_SAMPLE, event_type


@dataclass(frozen=True)
class FrameSeen:
    """One frame on the topic: where it lies in its stream, a digest of its PCM, and where it is on the topic."""

    stream_id: str
    connection: int  # the stream's connection it came in (-1: before any stream.started read)
    first_sample: int
    samples: int
    digest: str
    partition: int
    offset: int
    sample_rate: int = 16000

    @property
    def end_sample(self) -> int:
        return self.first_sample + self.samples

    @property
    def where(self) -> str:
        return f"{self.partition}@{self.offset}"


@dataclass
class ConnectionSeen:
    """One connection of a stream as the topic tells it: its start and, once stopped, its durable end."""

    first_sample: int
    end_sample: int | None = None
    sample_rate: int = 16000
    id: str | None = None  # the ingest's connection id (``StreamStartedV1.connection``)


@dataclass
class AudioSeen:
    """A meeting's records on the audio topic, taken in partition order (``note``)."""

    meeting_id: str
    frames: list[FrameSeen] = field(default_factory=list)
    connections: dict[str, list[ConnectionSeen]] = field(default_factory=lambda: defaultdict(list))
    unreadable: int = 0  # records of the meeting that are neither a frame nor a lifecycle event

    def note(self, key: bytes | None, value: bytes | None, headers: dict[str, bytes], partition: int,
             offset: int) -> None:  # fmt: skip
        """Take one record of the topic; records of other meetings are passed over."""
        stream = (key or b"").decode(errors="replace")
        if not stream.startswith(f"{self.meeting_id}/"):
            return
        if event_type(headers) == AUDIO_EVENT:
            try:
                first, rate = int(headers["first_sample"]), int(headers["sample_rate"])
            except (KeyError, ValueError):
                self.unreadable += 1
                return
            pcm = value or b""
            connection = self._connection_of(stream, headers.get("connection", b"").decode(errors="replace") or None)
            self.frames.append(FrameSeen(stream, connection, first, len(pcm) // BYTES_PER_SAMPLE,
                                         hashlib.blake2b(pcm, digest_size=8).hexdigest(), partition, offset, rate))  # fmt: skip
            return
        try:
            event = decode(value or b"")
        except (DecodeError, ValueError):
            self.unreadable += 1
            return
        if isinstance(event, StreamStartedV1):
            self.connections[stream].append(ConnectionSeen(event.first_sample, None, event.sample_rate, event.connection))
        elif isinstance(event, StreamStoppedV1) and self.connections[stream]:
            stopped = self.connections[stream][self._connection_of(stream, event.connection)]
            if stopped.end_sample is None:
                stopped.end_sample = event.end_sample

    def _connection_of(self, stream: str, connection: str | None) -> int:
        """The number of the stream's connection ``connection`` names; the last started without an id, or
        for an id not started (yet): -1 before any."""
        connections = self.connections[stream]
        if connection is not None:
            for number in range(len(connections) - 1, -1, -1):
                if connections[number].id == connection:
                    return number
        return len(connections) - 1


@dataclass
class AudioVerdict:
    findings: list[Finding]
    resent: int  # frames a resumed connection sent again (allowed)
    checked: dict[str, int]


def check_audio(audio: AudioSeen, acked: Sequence[AckedRange] | None) -> AudioVerdict:
    """Lost and duplicated audio of the meeting (module docstring). ``acked``: the meeting's acknowledged
    ranges from the clients' ack logs; None when there is no log (acked audio is then not judged)."""
    by_stream: dict[str, list[FrameSeen]] = defaultdict(list)
    for frame in audio.frames:
        by_stream[frame.stream_id].append(frame)
    held = {
        stream: union((f.first_sample, f.end_sample) for f in frames) for stream, frames in by_stream.items()
    }
    findings: list[Finding] = []
    acked_gaps: dict[str, list[Range]] = defaultdict(list)
    for claim in acked or ():
        for gap in missing((claim.first_sample, claim.acked), held.get(claim.stream_id, [])):
            acked_gaps[claim.stream_id].append(gap)
            findings.append(Finding(ACKED_AUDIO_LOST, {"stream_id": claim.stream_id, "connection": claim.connection},
                                    f"{samples_text(*gap)} acknowledged to the client (up to sample {claim.acked}), "
                                    "not on the audio topic"))  # fmt: skip
    for stream, connections in sorted(audio.connections.items()):
        told = union(acked_gaps.get(stream, []))
        for number, conn in enumerate(connections):
            if conn.end_sample is None:
                continue
            for gap in missing((conn.first_sample, conn.end_sample), held.get(stream, [])):
                for part in missing(gap, told):  # what the acked findings have not said already
                    findings.append(Finding(AUDIO_LOST, {"stream_id": stream, "connection": str(number)},
                                            f"{samples_text(*part, conn.sample_rate)} inside the connection, whose "
                                            f"stream.stopped says it made samples up to {conn.end_sample} durable, "
                                            "not on the audio topic"))  # fmt: skip
    resent = 0
    for stream, frames in sorted(by_stream.items()):
        duplicates, again = _duplicates(stream, frames)
        findings.extend(duplicates)
        resent += again
    checked = {"streams": len(set(by_stream) | set(audio.connections)), "frames": len(audio.frames),
               "connections": sum(len(c) for c in audio.connections.values())}  # fmt: skip
    if acked is not None:
        checked["acked connections"] = len(acked)
    return AudioVerdict(findings, resent, checked)


def _duplicates(stream: str, frames: list[FrameSeen]) -> tuple[list[Finding], int]:
    """The overlapping frames of one stream: findings, and how many were a resume's allowed resends."""
    findings: list[Finding] = []
    resent = 0
    ordered = sorted(frames, key=lambda f: (f.first_sample, f.partition, f.offset))
    open_frames: list[FrameSeen] = []  # frames that may overlap the ones after them
    for frame in ordered:
        open_frames = [f for f in open_frames if f.end_sample > frame.first_sample]
        for other in open_frames:
            first, later = sorted((other, frame), key=lambda f: (f.partition, f.offset))
            same_range = (first.first_sample, first.samples) == (later.first_sample, later.samples)
            # Any two connections: a moved stream's old connection may land its last frames after the new
            # one's resent copies of them.
            if same_range and first.digest == later.digest and later.connection != first.connection:
                resent += 1
                continue
            overlap = (frame.first_sample, min(other.end_sample, frame.end_sample))
            why = ("in one connection" if later.connection == first.connection
                   else "with other audio" if same_range else "in frames cut differently")  # fmt: skip
            findings.append(Finding(AUDIO_DUPLICATED, {"stream_id": stream, "frames": f"{first.where},{later.where}"},
                                    f"{samples_text(*overlap, frame.sample_rate)} twice on the audio topic ({why}: "
                                    f"connections {first.connection} and {later.connection})"))  # fmt: skip
        open_frames.append(frame)
    return findings, resent

"""The ingest socket's limits, as pure logic: how many streams may be connected, how fast a connection may
send, how long a stream may grow. Time is passed in (monotonic seconds), never read here, so every rule
is testable without waiting. ingest/app.py applies them; docs/ingest-protocol.md documents them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ingest.protocol import CloseCode, ProtocolError
from palaver.admission import Capacity, Full
from palaver.settings import Settings


@dataclass(frozen=True)
class IngestLimits:
    """One ingest process's limits (PALAVER_INGEST_*, PALAVER_MAX_STREAM_S); the defaults are the settings'."""

    max_streams_per_meeting: int = 32
    max_streams: int = 256  # admitted at once in this process, over all meetings (more: 1013)
    max_speed: float = 1.5  # sustained audio seconds per wall second one connection may send
    burst_s: float = 10.0  # audio seconds a connection may send ahead of max_speed (a catch-up)
    idle_s: float = 60.0  # a socket that sends nothing for this long is closed (before its header too)
    max_stream_s: int = 4 * 3600  # a stream's length in audio seconds, counted from its sample 0
    meeting_idle_s: float = 24 * 3600  # a meeting's timeline is released this long after its last stream

    @classmethod
    def from_settings(cls, settings: Settings) -> IngestLimits:
        return cls(max_streams_per_meeting=settings.ingest_max_streams_per_meeting,
                   max_streams=settings.ingest_max_streams, max_speed=settings.ingest_max_speed,
                   burst_s=settings.ingest_burst_s, idle_s=settings.ingest_idle_s, max_stream_s=settings.max_stream_s,
                   meeting_idle_s=settings.ingest_meeting_idle_s)  # fmt: skip

    def max_stream_samples(self, sample_rate: int) -> int:
        return self.max_stream_s * sample_rate

    def wire(self) -> dict[str, float | int]:
        """What the ``ready`` message tells the client, so a well-behaved client paces itself within them."""
        return {"max_speed": self.max_speed, "burst_s": self.burst_s, "idle_s": self.idle_s,
                "max_stream_s": self.max_stream_s}  # fmt: skip


class RateBucket:
    """A token bucket on samples: it holds up to ``burst_s`` seconds of audio, starts full and refills at
    ``max_speed`` x real time. A connection that sends at real time never drains it; one that catches up
    after an outage spends its burst and then whatever it sends above real time; one that sends at 2x
    drains it at one second per second and is cut once it is empty (after ``burst_s / (2 - max_speed)``
    seconds at the defaults: 20 s)."""

    def __init__(self, sample_rate: int, max_speed: float, burst_s: float, now_s: float):
        self._rate = max_speed * sample_rate  # samples per second
        self._capacity = burst_s * sample_rate
        self._level = self._capacity
        self._at = now_s
        self._max_speed = max_speed
        self._sample_rate = sample_rate

    def excuse(self, paused_s: float, now_s: float) -> None:
        """The server did not read the connection for the ``paused_s`` before ``now_s`` (it held back for
        the broker): a client sending at real time meanwhile piled up that much audio, which it does not owe.
        It is credited above the burst and spent before it; an earlier pause's unspent credit does not add."""
        self._refill(now_s)
        credit = paused_s * self._sample_rate
        self._level = min(self._level + credit, self._capacity + credit)

    def take(self, samples: int, now_s: float) -> None:
        """Spend ``samples`` arriving at ``now_s``; raises ProtocolError(TOO_FAST) when the bucket cannot pay."""
        self._refill(now_s)
        if samples > self._level:
            raise ProtocolError(
                CloseCode.TOO_FAST,
                f"audio arrives faster than {self._max_speed:g}x real time for longer than the burst allows",
            )
        self._level -= samples

    def _refill(self, now_s: float) -> None:
        if self._level < self._capacity:  # a pause's credit above the burst is kept until spent
            self._level = min(self._capacity, self._level + max(0.0, now_s - self._at) * self._rate)
        self._at = max(self._at, now_s)


def check_start_sample(start_sample: int, sample_rate: int, limits: IngestLimits) -> None:
    """A header's ``start_sample`` cannot lie beyond the longest stream (BAD_HEADER)."""
    if start_sample > limits.max_stream_samples(sample_rate):
        raise ProtocolError(
            CloseCode.BAD_HEADER, f"start_sample {start_sample} lies beyond the longest stream ({limits.max_stream_s} s)"
        )


def check_stream_length(end_sample: int, sample_rate: int, limits: IngestLimits) -> None:
    """A frame ending at stream sample ``end_sample`` must not carry the stream past its maximum length
    (STREAM_TOO_LONG); the audio before that frame stays."""
    if end_sample > limits.max_stream_samples(sample_rate):
        raise ProtocolError(
            CloseCode.STREAM_TOO_LONG, f"the stream reached its maximum length of {limits.max_stream_s} s"
        )


@dataclass
class ActiveStreams:
    """The streams admitted to this process, by meeting. A stream is admitted once its header is accepted
    and holds its slot until its connection ends: ``check`` (before the header, so that a full process
    reads nothing of a new socket) and ``admit`` (once the header is accepted) decide, ``release`` frees
    the slot. The process-wide slots are ``capacity`` (``palaver.admission``: its refusal is 1013 with a
    retry hint, and ``/readyz`` reads it)."""

    limits: IngestLimits
    by_meeting: dict[str, set[str]] = field(default_factory=dict)
    capacity: Capacity = field(init=False)

    def __post_init__(self) -> None:
        self.capacity = Capacity("streams", self.limits.max_streams)

    @property
    def count(self) -> int:
        return self.capacity.held

    def __contains__(self, stream: str) -> bool:
        meeting = stream.split("/", 1)[0]
        return stream in self.by_meeting.get(meeting, ())

    def check(self, meeting_id: str, stream: str) -> None:
        """Raise what ``admit`` would, taking nothing: STREAM_BUSY when that stream is connected already
        (first: a reconnect that the server has not yet seen drop is told to retry), MEETING_FULL (the
        meeting's own limit, whatever the server's load), SERVER_FULL (1013, with a retry hint)."""
        streams = self.by_meeting.get(meeting_id, set())
        if stream in streams:
            raise ProtocolError(CloseCode.STREAM_BUSY, f"stream {stream} is already connected")
        if len(streams) >= self.limits.max_streams_per_meeting:
            raise ProtocolError(
                CloseCode.MEETING_FULL,
                f"meeting {meeting_id} has its maximum of {self.limits.max_streams_per_meeting} streams",
            )
        try:
            self.capacity.check()
        except Full as full:
            raise ProtocolError(CloseCode.SERVER_FULL, full.reason) from None

    def admit(self, meeting_id: str, stream: str) -> None:
        """Take a slot for ``stream`` of ``meeting_id`` or raise as ``check`` does (nothing taken)."""
        self.check(meeting_id, stream)
        self.capacity.take()
        self.by_meeting.setdefault(meeting_id, set()).add(stream)

    def release(self, meeting_id: str, stream: str) -> None:
        streams = self.by_meeting.get(meeting_id)
        if streams is None or stream not in streams:
            return
        streams.discard(stream)
        self.capacity.release()
        if not streams:
            del self.by_meeting[meeting_id]

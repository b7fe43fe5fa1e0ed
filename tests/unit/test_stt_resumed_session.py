"""A client resumes at its last ack, which can be before the end of the session the server stopped (the
server had durable audio the client never heard acked). The worker opens the new session after the audio it
already transcribed, so resent audio makes no second utterance."""

from __future__ import annotations

from types import SimpleNamespace

from palaver import ids
from palaver.events import AudioFrameV1, StreamStartedV1, StreamStoppedV1
from palaver.settings import Settings
from palaver.streams.memory_broker import MemoryBroker
from stt_workers.pipeline import SttWorker
from stt_workers.processor import StreamInfo
from stt_workers.transcriber import KeyedEvent, OutputQueue

RATE = 16000
STREAM = "m1/ana"


class _Sessions:
    """A transcriber that records where each session of a stream opens."""

    name, model, run = "whisper", "fake", "whisper:fake"

    def __init__(self) -> None:
        self.queue = OutputQueue()
        self.open_streams: set[str] = set()
        self.opened_at: list[int] = []
        self.stops = 0

    def forward(self, stream_id: str, event: KeyedEvent) -> None:
        self.queue.emit(stream_id, event)

    def holds(self, stream_id: str) -> bool:
        return stream_id in self.open_streams

    async def open(self, info: StreamInfo, partition: int, first_sample: int) -> None:
        self.open_streams.add(info.stream_id)
        self.opened_at.append(first_sample)

    async def stop(self, stream_id: str, offset: int, last: KeyedEvent) -> None:
        self.open_streams.discard(stream_id)
        self.stops += 1


def _started(first_sample: int, connection: str | None = None) -> StreamStartedV1:
    return StreamStartedV1(event_id=ids.event_id("stream.started", STREAM, first_sample), meeting_id="m1",
                           speaker_id="ana", stream_id=STREAM, sample_rate=RATE, stream_start_ms=0,
                           first_sample=first_sample, connection=connection)  # fmt: skip


def _stopped(end_sample: int, connection: str | None = None) -> StreamStoppedV1:
    return StreamStoppedV1(event_id=ids.event_id("stream.stopped", STREAM, end_sample), meeting_id="m1",
                           speaker_id="ana", stream_id=STREAM, stream_start_ms=0, end_sample=end_sample,
                           reason="disconnect", connection=connection)  # fmt: skip


async def test_a_session_resumed_before_the_last_stop_opens_at_the_stop() -> None:
    sessions = _Sessions()
    worker = SttWorker(Settings(), sessions, MemoryBroker().producer())  # type: ignore[arg-type]
    record = SimpleNamespace(partition=0, offset=1)
    await worker._on_started(_started(0), 0)
    await worker._on_stopped(_stopped(5 * RATE), record)  # type: ignore[arg-type]
    await worker._on_started(_started(4 * RATE), 0)  # the client's last ack: 1 s before the stop
    await worker._on_stopped(_stopped(9 * RATE), record)  # type: ignore[arg-type]
    await worker._on_started(_started(10 * RATE), 0)  # a session after the last stop opens where it says
    assert sessions.opened_at == [0, 5 * RATE, 10 * RATE]


async def test_a_late_stop_of_a_connection_on_another_ingest_process_ends_nothing() -> None:
    """The stream moved to another ingest process, which started it again before the old process's stop
    landed: the old stop (another connection's id) leaves the stream open; the new connection's stop ends it."""
    sessions = _Sessions()
    worker = SttWorker(Settings(), sessions, MemoryBroker().producer())  # type: ignore[arg-type]
    record = SimpleNamespace(partition=0, offset=1)
    await worker._on_started(_started(0, "0@1"), 0)
    await worker._on_started(_started(4 * RATE, "0@2"), 0)
    await worker._on_stopped(_stopped(5 * RATE, "0@1"), record)  # type: ignore[arg-type]
    assert sessions.holds(STREAM)
    await worker._on_stopped(_stopped(9 * RATE, "0@2"), record)  # type: ignore[arg-type]
    assert not sessions.holds(STREAM)
    await worker._on_started(_started(9 * RATE, "0@3"), 0)
    await worker._on_stopped(_stopped(12 * RATE, "0@3"), record)  # type: ignore[arg-type]
    await worker._on_stopped(_stopped(5 * RATE, "0@1"), record)  # later still: after the newest one's stop
    assert sessions.stops == 2, "only the stops of the newest connections ended the stream"


async def test_a_late_frame_of_an_older_connection_after_the_stop_opens_nothing() -> None:
    """The old process's last frames can land even after the stream's newest connection stopped: audio
    before that stop was transcribed, so it opens no session."""
    sessions = _Sessions()
    worker = SttWorker(Settings(), sessions, MemoryBroker().producer())  # type: ignore[arg-type]
    record = SimpleNamespace(partition=0, offset=1)
    await worker._on_started(_started(0, "0@1"), 0)
    await worker._on_started(_started(4 * RATE, "0@2"), 0)
    await worker._on_stopped(_stopped(9 * RATE, "0@2"), record)  # type: ignore[arg-type]
    late = AudioFrameV1("m1", "ana", STREAM, RATE, 4 * RATE, 0, b"\0\0" * 1600, connection="0@1")
    await worker._on_frame(late, record)  # type: ignore[arg-type]
    assert not sessions.holds(STREAM) and sessions.opened_at == [0, 4 * RATE]

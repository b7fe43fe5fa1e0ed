"""The cloud STT path: one ``StreamingSession`` per active stream on a streaming engine (Deepgram, OpenAI
Realtime); its interim results become partial events and its finals final events
(``processor.StreamingTranscript``), so ids and wire shapes are those of the local path.

Per stream, one task feeds the session (opened at the stream's first audio, at the stream's resume point)
and one reads its results into the transcriber's queue, which the worker takes for its next round
(``take``), so the worker's loop never waits on the network. The engine
handles silence (Deepgram's KeepAlive) and dropped connections (it reconnects and resends); a refusal
(``EngineError``: a bad key) or a connection it gives up on stops the worker loudly.

A refusal that concerns one stream only (``EngineError.scope == "stream"``: the service does not take the
stream's language) stops only that stream's transcription: one error in the log, no retry in another
language; its audio is consumed as it comes (its resume point follows it, so it holds no commit) and, as
for silence on the local path, ``stream.progress`` events say how far it is settled, so the meeting's
watermark does not wait for it; its ``stream.stopped`` goes out as usual. A refusal in the worker's
default language (``PALAVER_STT_LANGUAGE``) is the worker's own: every stream without a language of its
own would meet it, so it stops the worker (``refuses_only_the_stream``).

Resume point of a stream: the session's ``settled_sample`` (the start of the open utterance, else the end
of the last final), which only advances once the results before it are queued, so the offsets the worker
commits (computed right after it takes the queue) never pass a final it has not published. A restarted
owner opens the session there and sends the audio from there on: the open utterance is transcribed again,
whole.

Stop: the session is finished (Finalize) by its feeding task and the stream's last finals, then its
``stream.stopped``, go out when they come; until then the stream holds its partition's commit before the
stop. Revocation and shutdown close the sessions without finishing them (no utterance is cut at the
rebalance, and the group does not wait on the service): what was delivered is published and committed,
and the new owner resumes each stream at its resume point.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiokafka.structs import ConsumerRecord

from palaver.events import AudioFrameV1, encode
from palaver.metrics import (
    STT_ACTIVE_STREAMS,
    STT_FINAL_LATENCY,
    STT_PARTIAL_LATENCY,
    STT_REFUSED_STREAMS,
    STT_UTTERANCES,
)
from palaver.settings import Settings
from stt_workers.engine import Transcription
from stt_workers.processor import StreamInfo, StreamingTranscript, continue_pcm, needed_offset, progress_event
from stt_workers.streaming import EngineError, RecognizedSpeech, StreamingEngine, StreamingSession
from stt_workers.transcriber import (
    Decode,
    DecodeResults,
    KeyedEvent,
    OutputQueue,
    Pending,
    Queued,
    ResumePoint,
)

log = logging.getLogger(__name__)

PROGRESS_INTERVAL_MS = 1000
_FINISH = object()  # on a stream's feed: finish the session, then the stream is done


@dataclass(frozen=True)
class _Restart:
    first_sample: int  # finish the session; the next audio opens a new one here (a large hole in the stream)


@dataclass
class _Stream:
    info: StreamInfo
    partition: int
    start: int  # where the next session opens (and the resume point while none is open)
    transcript: StreamingTranscript
    end_sample: int = 0  # the stream's audio so far ends here
    frame_offsets: deque[tuple[int, int]] = field(default_factory=deque)  # (end_sample, kafka offset)
    last_frame: tuple[int, int] = (0, 0)  # Kafka append time (ms) and end sample of the newest frame
    progress_ms: int = -1
    feed: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    session: StreamingSession | None = None
    feeder: asyncio.Task[None] | None = None
    reader: asyncio.Task[None] | None = None
    stop_offset: int | None = None  # its stream.stopped record, while the session finishes
    refused: str | None = None  # why the service refused this stream alone: its audio is skipped
    finishing: bool = False  # its feeding task took the stop
    done: asyncio.Event = field(default_factory=asyncio.Event)  # its last event is queued

    def resume_sample(self) -> int:
        if self.refused is not None:
            return self.end_sample  # nothing will be transcribed: everything consumed is done with
        return self.session.settled_sample if self.session is not None else self.start

    def audio_time_ms(self, sample: int) -> int:
        appended_ms, end_sample = self.last_frame
        return appended_ms - (end_sample - sample) * 1000 // self.info.sample_rate


class CloudTranscriber:
    def __init__(self, settings: Settings, engine: StreamingEngine):
        self._engine = engine  # each stream's session opens in the stream's language (StreamInfo.language)
        self._default_language = settings.stt_language
        self.name, self.model = engine.name, engine.model
        self._queue = OutputQueue()  # output waiting for the worker's next round (filled by the readers too)
        self._streams: dict[str, _Stream] = {}
        self._stopping: list[_Stream] = []  # stopped, session finishing
        self._failure: BaseException | None = None

    @property
    def run(self) -> str:
        """The run its events belong to: the live run ``engine:model``."""
        return f"{self.name}:{self.model}"

    def holds(self, stream_id: str) -> bool:
        return stream_id in self._streams

    async def open(self, info: StreamInfo, partition: int, first_sample: int) -> None:
        if info.stream_id in self._streams:
            return
        for earlier in [s for s in self._stopping if s.info.stream_id == info.stream_id]:
            await earlier.done.wait()  # its finals and stream.stopped go out before this session's events
        stream = _Stream(info, partition, first_sample, StreamingTranscript(info), end_sample=first_sample)
        stream.feeder = asyncio.create_task(self._feed(stream), name=f"stt-feed {info.stream_id}")
        self._streams[info.stream_id] = stream
        STT_ACTIVE_STREAMS.set(len(self._streams))

    async def audio(self, frame: AudioFrameV1, record: ConsumerRecord) -> None:
        stream = self._streams[frame.stream_id]
        stream.last_frame = (record.timestamp, frame.end_sample)
        if stream.refused is not None:
            stream.end_sample = max(stream.end_sample, frame.end_sample)  # consumed: its progress moves on
            return
        pcm, restart_at = continue_pcm(stream.end_sample, frame)
        if not pcm:
            return
        if restart_at is not None:
            stream.feed.put_nowait(_Restart(restart_at))
        stream.end_sample = frame.end_sample
        stream.frame_offsets.append((frame.end_sample, record.offset))
        stream.feed.put_nowait(pcm)

    def forward(self, stream_id: str, event: KeyedEvent) -> None:
        self._queue.emit(stream_id, event)

    def set_vocabulary(self, meeting_id: str, terms: list[str]) -> None:
        """Not passed to the cloud engines (their keyword options differ): ignored."""

    async def stop(self, stream_id: str, offset: int, last: KeyedEvent) -> None:
        stream = self._streams.pop(stream_id, None)
        STT_ACTIVE_STREAMS.set(len(self._streams))
        if stream is None:
            self._queue.emit(stream_id, last)
            return
        stream.stop_offset = offset
        self._stopping.append(stream)
        stream.feed.put_nowait(_FINISH)
        assert stream.feeder is not None
        stream.feeder.add_done_callback(lambda task: self._stopped(stream, task, last))

    def _stopped(self, stream: _Stream, feeder: asyncio.Task[None], last: KeyedEvent) -> None:
        if feeder.cancelled() or self._failure is not None:
            return  # released, or failed (the worker stops): the next owner finishes it
        self._queue.emit(stream.info.stream_id, last)
        self._stopping.remove(stream)
        stream.done.set()

    def after_batch(self, touched: set[str]) -> None:
        """In silence, tell the merger how far a stream is settled (the engine's settled point; a refused
        stream: the end of its audio)."""
        for stream_id in sorted(touched):
            stream = self._streams.get(stream_id)
            if stream is None or stream.transcript.open is not None:
                continue
            event = progress_event(stream.info, stream.resume_sample(), self.run)
            if event.settled_ms - stream.progress_ms >= PROGRESS_INTERVAL_MS:
                stream.progress_ms = event.settled_ms
                self._queue.emit(stream.info.stream_id, KeyedEvent(stream.info.meeting_id, encode(event)))

    def resume_points(self) -> Iterator[ResumePoint]:
        for stream in [*self._stopping, *self._streams.values()]:
            needed = needed_offset(stream.frame_offsets, stream.resume_sample())
            if stream.stop_offset is not None:
                needed = stream.stop_offset if needed is None else min(needed, stream.stop_offset)
            yield ResumePoint(stream.info.stream_id, stream.partition, stream.resume_sample(), needed)

    async def release(self, partitions: set[int] | None) -> None:
        """Close these partitions' sessions without finishing them; resume points stay where they are."""
        for stream in [*self._stopping, *self._streams.values()]:
            if partitions is None or stream.partition in partitions:
                await self._abandon(stream)

    async def _abandon(self, stream: _Stream) -> None:
        for task in (stream.feeder, stream.reader):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if stream.session is not None:
            stream.start = stream.session.settled_sample
            session, stream.session = stream.session, None
            with contextlib.suppress(Exception):
                await session.close()

    def forget(self, partitions: set[int]) -> None:
        for stream_id, stream in list(self._streams.items()):
            if stream.partition in partitions:
                del self._streams[stream_id]
        self._stopping = [s for s in self._stopping if s.partition not in partitions]
        STT_ACTIVE_STREAMS.set(len(self._streams))

    def pending(self) -> Pending:
        return self._queue.pending()

    def take(self) -> list[Queued]:
        return self._queue.take()

    def decode(self, decodes: list[Decode]) -> DecodeResults:
        raise AssertionError("the cloud path queues no decode requests")

    def event(self, decode: Decode, result: Transcription | None) -> KeyedEvent | None:
        raise AssertionError("the cloud path queues no decode requests")

    def idle_lane(self) -> bool:
        return False  # nothing to decode here

    def check(self) -> None:
        if self._failure is not None:
            raise self._failure

    def speaking(self) -> int:
        return sum(1 for s in self._streams.values() if s.transcript.open is not None)

    async def close(self) -> None:
        await self.release(None)

    # -- per-stream tasks ------------------------------------------------------------------------------------

    async def _feed(self, stream: _Stream) -> None:
        """Sends the stream's audio in order; opens the session at the first audio, finishes it on stop.
        After a refusal of this stream alone it skips what is queued until the stop."""
        try:
            await self._send_all(stream)
        except Exception as exc:  # the worker's loop raises it (``check``) unless it refused this stream alone
            self._fail(stream, exc)
            if stream.refused is None:
                return
            if stream.session is not None:
                session, stream.session = stream.session, None
                with contextlib.suppress(Exception):
                    await session.close()
            while not stream.finishing:
                stream.finishing = await stream.feed.get() is _FINISH

    async def _send_all(self, stream: _Stream) -> None:
        while True:
            item = await stream.feed.get()
            if isinstance(item, bytes):
                if stream.session is None:
                    stream.session = await self._engine.open(stream.info.sample_rate, stream.info.language,
                                                             first_sample=stream.start)  # fmt: skip
                    stream.reader = asyncio.create_task(self._read(stream, stream.session),
                                                        name=f"stt-read {stream.info.stream_id}")  # fmt: skip
                await stream.session.send(item)
            elif isinstance(item, _Restart):
                await self._finish(stream)
                stream.start = item.first_sample
            elif item is _FINISH:
                stream.finishing = True
                await self._finish(stream)
                return

    async def _finish(self, stream: _Stream) -> None:
        """Finalize the session and wait until every result is queued."""
        if stream.session is None:
            return
        await stream.session.finish()
        if stream.reader is not None:
            await stream.reader
        stream.start = stream.end_sample
        stream.session = None

    async def _read(self, stream: _Stream, session: StreamingSession) -> None:
        try:
            async for speech in session.results():
                self._publish(stream, speech)
        except Exception as exc:  # the worker's loop raises it (``check``)
            self._fail(stream, exc)

    def _publish(self, stream: _Stream, speech: RecognizedSpeech) -> None:
        info = stream.info
        meta = {"language": info.language, "engine": self.name, "model": self.model}
        if not speech.final:
            partial = stream.transcript.partial(speech, **meta)
            if partial is not None:
                STT_PARTIAL_LATENCY.observe(max(0.0, time.time() - stream.audio_time_ms(speech.end_sample) / 1000))
                self._queue.emit(info.stream_id, KeyedEvent(info.meeting_id, encode(partial)))
            return
        final = stream.transcript.final(speech, **meta)
        if final is None:
            return
        STT_UTTERANCES.labels(engine=self.name).inc()
        STT_FINAL_LATENCY.observe(max(0.0, time.time() - stream.audio_time_ms(speech.end_sample) / 1000))
        log.info("%s %d-%d ms: %s", info.stream_id, final.start_ms, final.end_ms, final.text)
        self._queue.emit(info.stream_id, KeyedEvent(info.meeting_id, encode(final)))

    def _fail(self, stream: _Stream, exc: BaseException) -> None:
        if refuses_only_the_stream(exc, stream.info.language, self._default_language):
            self._refuse(stream, exc)
        elif self._failure is None:
            log.error("%s engine failed on stream %s: %s", self.name, stream.info.stream_id, exc)
            self._failure = exc

    def _refuse(self, stream: _Stream, exc: BaseException) -> None:
        if stream.refused is not None:
            return
        stream.refused = str(exc)
        STT_REFUSED_STREAMS.labels(engine=self.name).inc()
        stream.transcript.open = None
        stream.frame_offsets.clear()
        info = stream.info
        log.error("%s refused stream %s (language %r): %s; not transcribing it, its audio is skipped until it stops",
                  self.name, info.stream_id, info.language, exc)  # fmt: skip


def refuses_only_the_stream(exc: BaseException, language: str, default_language: str) -> bool:
    """Whether ``exc`` ends one stream's transcription and not the worker: a refusal the engine scoped to
    the stream (its language), for a stream that asked for another language than the worker's default.
    In the default language the same refusal would meet every stream without a language of its own, so it
    is the worker's configuration (the default language, or the model where the service cannot say which)."""
    return isinstance(exc, EngineError) and exc.scope == "stream" and language != default_language

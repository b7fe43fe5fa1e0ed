"""The STT worker: consume audio, hand each stream's audio to the transcriber, produce its events, commit.

A step of the consumer runner (``palaver.streams.runner``), which owns the consumer, rebalances, the DLQ
and commits; this module is the rest of the Kafka edge, the same for every engine; the per-engine part is a ``Transcriber``
(``transcriber.py``): the local path segments with Silero and decodes with batched Whisper
(``local_transcriber.py``), the cloud path keeps one streaming session per stream (``cloud_transcriber.py``).

Commit policy: a partition's offset is committed only up to the first frame a restart needs: per stream,
the frame holding its *resume point* (the local path: the segmenter's ``keep_from``, before any unfinished
utterance and its pre-roll; the cloud path: the session's settled sample, the start of the open
utterance). The commit metadata carries every stream's resume point, because the offset is the earliest
of them: a restarted owner starts each stream at its own point and skips the audio before it. From there
it finds the same utterances again, so the same utterance ids (hash of stream and start sample): a final
published before the crash but not yet committed comes again as the same utterance, which downstream
upserts by id.

The flow is one way: the worker calls the transcriber and publishes what it hands back; nothing calls the
worker. A publish round: the worker asks what waits (``Transcriber.pending``), takes it (``take``: a list
of encoded events and decode requests, each with its stream), begins the decodes (``decode``: the
scheduler plans the batches at once and yields each result as its batch ends), and publishes each stream's
items in order, turning each decode's result into its event (``event``) once the stream's events before it
are out.

Publish rounds overlap the reading: while one round decodes (in threads; CTranslate2 releases the GIL)
and publishes, the loop goes on consuming audio, and the transcriber queues finals, partials and other
events for the next round. Within a round each stream's events go out in order, each as soon as its decode
is done (finals are decoded in the round's first batches). A final queued while a round runs starts the
next round at once: it overtakes the running one (whose partials not started yet are dropped) and takes
the first free decode lane; queued decodes also start a round of their own when a lane idles while the
running round's last batches finish on the others. Each stream's events still go out in the order they
arose, across rounds too. A round takes the commit offsets with its output and commits them after
publishing it and after the round it overtook has committed, so an offset is committed only once every
final of the audio before it is produced: each round is a checkpoint of the runner (its persist is the
round), and the runner completes checkpoints in order.

Rebalances: on revocation the transcriber stops producing output for the partition's streams
(``closing``), the last round publishes what is queued, the runner commits what is safe, and the
transcriber forgets the streams; on assignment the worker loads the resume points from the commit
metadata. A frame that cannot be handled (a bad header, an event that does not belong on the audio topic)
is dead-lettered by the runner.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from palaver.events import AudioFrameV1, DecodeError, StreamStartedV1, StreamStoppedV1, decode, encode
from palaver.events.audio_frame_v1 import AUDIO_EVENT, event_type
from palaver.events.registry import AUDIO_FRAMES, TRANSCRIPTS, topic_name
from palaver.metrics import STT_SPEECH_STREAMS
from palaver.settings import Settings
from palaver.streams.clients import headers_dict, make_producer
from palaver.streams.runner import Checkpoint, Committed, ConsumerRunner, Offsets, RunnerConfig, Step
from stt_workers.engine import Transcription
from stt_workers.processor import MAX_RESUME_METADATA, StreamInfo, decode_resume, encode_resume, resume_key
from stt_workers.transcriber import Decode, DecodeResults, KeyedEvent, OutputItem, Queued, Transcriber
from stt_workers.vocabulary_follower import VocabularyFollower

log = logging.getLogger(__name__)

GROUP = "stt"
# Rounds overlap (a final overtakes the running round); fetching pauses only when this many are unfinished.
MAX_ROUNDS_IN_FLIGHT = 16
STOPS_KEPT = 100_000  # stopped streams whose end a resumed session is checked against (a few MB)
RUNNER = RunnerConfig(service=GROUP, topics=(AUDIO_FRAMES,), group=GROUP, batch_max=500, poll_ms=100,
                      max_pending_checkpoints=MAX_ROUNDS_IN_FLIGHT)  # fmt: skip


async def run_stt_worker(settings: Settings, transcriber: Transcriber, stop: asyncio.Event) -> None:
    """Transcribe until ``stop`` is set, with the meetings' vocabularies as the topic holds them
    (``VocabularyFollower``: read to its end before the first audio, then followed)."""
    producer = make_producer(settings)
    await producer.start()
    vocabularies = VocabularyFollower(settings, transcriber.set_vocabulary)
    try:
        await vocabularies.start()
        log.info("stt worker (%s %s) starting", transcriber.name, transcriber.model)
        await ConsumerRunner(settings, RUNNER, SttWorker(settings, transcriber, producer), producer).run(stop)
    finally:
        await vocabularies.stop()
        await transcriber.close()
        await producer.stop()


class SttWorker(Step):
    def __init__(self, settings: Settings, transcriber: Transcriber, producer: AIOKafkaProducer):
        self._settings = settings
        self._transcriber = transcriber
        self._producer = producer
        ns = settings.topic_namespace
        self._audio_topic = topic_name(ns, AUDIO_FRAMES.name)
        self._transcripts_topic = topic_name(ns, TRANSCRIPTS.name)
        self._processed: dict[int, int] = {}  # partition -> next offset after the last record handled
        self._owned: set[int] = set()  # partitions assigned
        # partition -> {resume_key: sample}: resume points from the commit metadata of streams not seen
        # again yet (carried into every commit until their audio comes)
        self._pending: dict[int, dict[str, int]] = {}
        self._touched: set[str] = set()  # streams that got audio in this batch
        # stream -> the end of its last stopped session: a resumed session resends audio from the client's
        # last ack, which can be before it (the server had more durable), and that audio is transcribed
        self._stopped_at: dict[str, int] = {}
        # stream -> the ingest's id of its newest connection (stream.started): a stop of another connection
        # came late from another ingest process, after the stream resumed there, and ends nothing.
        self._connection: dict[str, str] = {}
        self._round: asyncio.Future[None] | None = None  # the newest publish round
        # stream -> done when its events of the newest round holding it are published (the next round's
        # wait for it)
        self._published: dict[str, asyncio.Future[None]] = {}

    @property
    def _run(self) -> str:
        return self._transcriber.run

    async def process(self, record: ConsumerRecord) -> None:
        await self._handle(record)
        self._processed[record.partition] = record.offset + 1

    async def after_batch(self) -> None:
        t = self._transcriber
        t.check()  # an engine that refuses the stream (a bad key) stops the worker here
        t.after_batch(self._touched)
        self._touched = set()
        STT_SPEECH_STREAMS.set(t.speaking())

    def poll_ms(self, idle_ms: int) -> int:
        # Queued output waits for the running round: look again soon, to start the next one.
        return 20 if self._transcriber.pending().output else idle_ms

    async def snapshot(self, offsets: Offsets, final: bool) -> Checkpoint | None:
        """A publish round as the runner's checkpoint (see ``_start_round``); ``final``: a last round of
        everything queued, after the running ones."""
        if not (final or offsets or self._transcriber.pending().output):
            return None
        return self._start_round(final)

    def _start_round(self, final: bool = False) -> Checkpoint | None:
        """Start a publish round for everything queued so far. While one runs the queue grows until it
        ends (meanwhile the loop goes on reading audio, so the decoder and the VAD overlap), unless a
        final waits in it: then a new round starts at once and overtakes the running one, whose
        partials not started yet are dropped, so a final waits for a free decode lane, not for the end of
        the round. Likewise when a decode lane idles while the running round's last batches finish on
        the others: the queued decodes take it. Each stream's events still go out in order across
        rounds, and rounds commit in order (the runner's checkpoints). The round's decodes begin here
        (their batches are planned before this returns, so a later round sees the lanes they will take).
        The offsets to commit are taken now, with the output: they are safe once this round's events,
        and the earlier rounds', are produced, because every final of audio handled so far is in them."""
        t = self._transcriber
        previous = self._round
        if previous is not None and not previous.done() and not final:
            pending = t.pending()
            # An idle lane: the running rounds have planned and started all their batches, and a lane
            # idles; under load none does, and rounds follow each other as before.
            if not (pending.final or (pending.decode and t.idle_lane())):
                return None
        items = t.take()
        offsets = self.committable()
        decodes = [item for _, item in items if isinstance(item, Decode)]
        results = t.decode(decodes) if decodes else None
        self._round = round_ = asyncio.ensure_future(self._publish_round(items, decodes, results))

        async def persist() -> None:
            await round_

        return Checkpoint(offsets, persist)

    async def _publish_round(self, items: list[Queued], decodes: list[Decode],
                             results: DecodeResults | None) -> None:  # fmt: skip
        """Publish each stream's ``items`` in the order they arose, each as soon as it and the stream's
        events before it (in this round and in an earlier round still running) are ready: a final decoded
        in the round's first batch does not wait for the partials' batches. ``results`` are those of
        ``decodes``, decoded together (the local path batches across streams). Returns once everything is
        delivered."""
        loop = asyncio.get_running_loop()
        decoded: dict[Decode, asyncio.Future[Transcription | None]] = {d: loop.create_future() for d in decodes}

        async def decode_all() -> None:
            if results is None:
                return
            try:
                async for index, result in results:
                    decoded[decodes[index]].set_result(result)
            finally:  # a failed decode fails the round (the worker stops and the input is read again)
                await results.aclose()
                for future in decoded.values():
                    if not future.done():
                        future.set_exception(RuntimeError("the round's decoding failed"))

        streams: dict[str, list[OutputItem]] = {}
        for stream_id, item in items:
            streams.setdefault(stream_id, []).append(item)
        deliveries: list[asyncio.Future[object]] = []
        # Each stream publishes after its events of the rounds before this one.
        after = {stream: self._published.get(stream) for stream in streams}
        done = {stream: loop.create_future() for stream in streams}
        self._published.update(done)

        async def publish(stream: str, stream_items: list[OutputItem]) -> None:
            try:
                before = after[stream]
                if before is not None:
                    await asyncio.wait({before})  # not ``await``: cancelling this round must not cancel it
                for item in stream_items:
                    if isinstance(item, Decode):
                        event = self._transcriber.event(item, await decoded[item])
                        if event is None:
                            continue
                    else:
                        event = item
                    delivery = await self._producer.send(self._transcripts_topic, event.value,
                                                         key=event.meeting_id.encode())  # fmt: skip
                    deliveries.append(delivery)
            finally:
                if self._published.get(stream) is done[stream]:
                    del self._published[stream]
                done[stream].set_result(None)

        await asyncio.gather(decode_all(), *(publish(stream, its_items) for stream, its_items in streams.items()))
        if deliveries:
            await asyncio.gather(*deliveries)

    async def _handle(self, record: ConsumerRecord) -> None:
        """One record of the audio topic; raises (a bad message) for a bad frame header or an event that
        does not belong there."""
        headers = headers_dict(record.headers)
        if event_type(headers) == AUDIO_EVENT:
            frame = AudioFrameV1.from_kafka(record.value, headers)
            await self._on_frame(frame, record)
            self._touched.add(frame.stream_id)
            return
        event = decode(record.value)
        if isinstance(event, StreamStartedV1):
            await self._on_started(event, record.partition)
        elif isinstance(event, StreamStoppedV1):
            await self._on_stopped(event, record)
        else:
            raise DecodeError(f"{type(event).__name__} does not belong on the audio topic")

    def _resume_point(self, stream_id: str, partition: int) -> int | None:
        """Where the previous owner's transcription of this stream resumes (None: not a resumed stream)."""
        return self._pending.get(partition, {}).get(resume_key(stream_id))

    def _drop_resume_point(self, stream_id: str, partition: int) -> None:
        self._pending.get(partition, {}).pop(resume_key(stream_id), None)

    async def _on_started(self, event: StreamStartedV1, partition: int) -> None:
        info = StreamInfo(event.meeting_id, event.speaker_id, event.stream_id, event.sample_rate, event.stream_start_ms,
                          event.language or self._settings.stt_language)  # fmt: skip
        resume = self._resume_point(event.stream_id, partition)
        if resume is not None and event.first_sample > resume:  # a session after the one that was resumed
            self._drop_resume_point(event.stream_id, partition)
            resume = None
        already = self._stopped_at.pop(event.stream_id, 0)
        if event.connection is not None:
            self._connection.pop(event.stream_id, None)  # re-inserted: the oldest is dropped first
            self._connection[event.stream_id] = event.connection
            if len(self._connection) > STOPS_KEPT:
                del self._connection[next(iter(self._connection))]
        if resume is None:  # else the resumed stream starts with the first frame it needs
            await self._transcriber.open(info, partition, max(event.first_sample, already))
        started = KeyedEvent(event.meeting_id, encode(event.model_copy(update={"run": self._run})))
        self._transcriber.forward(event.stream_id, started)

    async def _on_frame(self, frame: AudioFrameV1, record: ConsumerRecord) -> None:
        if not self._transcriber.holds(frame.stream_id):
            if frame.end_sample <= self._stopped_at.get(frame.stream_id, 0):
                return  # an older connection's frame landing after the stream stopped: transcribed already
            first_sample = frame.first_sample
            resume = self._resume_point(frame.stream_id, record.partition)
            if resume is not None:
                if frame.end_sample <= resume:
                    return  # transcribed before the resume point: its utterances are already published
                self._drop_resume_point(frame.stream_id, record.partition)
                first_sample = resume
            # The frame's own language header: a stream taken over mid-way never shows us its stream.started.
            info = StreamInfo(frame.meeting_id, frame.speaker_id, frame.stream_id, frame.sample_rate,
                              frame.stream_start_ms, frame.language or self._settings.stt_language)  # fmt: skip
            await self._transcriber.open(info, record.partition, first_sample)
        await self._transcriber.audio(frame, record)

    async def _on_stopped(self, event: StreamStoppedV1, record: ConsumerRecord) -> None:
        newest = self._connection.get(event.stream_id)
        if event.connection is not None and newest is not None and newest != event.connection:
            log.info("stream %s: a late stop of connection %s (the stream goes on in %s) ends nothing",
                     event.stream_id, event.connection, newest)  # fmt: skip
            return
        resume = self._resume_point(event.stream_id, record.partition)
        if resume is not None and event.end_sample >= resume:  # else an earlier session's stop
            self._drop_resume_point(event.stream_id, record.partition)
        last = KeyedEvent(event.meeting_id, encode(event.model_copy(update={"run": self._run})))
        await self._transcriber.stop(event.stream_id, record.offset, last)
        ended = self._stopped_at.pop(event.stream_id, 0)  # re-inserted: the oldest stop is dropped first
        self._stopped_at[event.stream_id] = max(ended, event.end_sample)
        if len(self._stopped_at) > STOPS_KEPT:
            del self._stopped_at[next(iter(self._stopped_at))]

    def committable(self) -> dict[TopicPartition, tuple[int, str]]:
        """Per partition handled: (offset, metadata). The offset is the first frame still needed by a
        stream's resume point, else everything handled; the metadata holds every stream's resume point
        (``encode_resume``), those not seen again since the assignment included."""
        offsets = dict(self._processed)
        points = {p: dict(self._pending.get(p, {})) for p in offsets}
        for point in self._transcriber.resume_points():
            if point.partition not in offsets:
                continue
            if point.needed_offset is not None:
                offsets[point.partition] = min(offsets[point.partition], point.needed_offset)
            points[point.partition][resume_key(point.stream_id)] = point.sample
        result = {}
        for p, offset in offsets.items():
            metadata = encode_resume(points[p])
            if len(metadata) > MAX_RESUME_METADATA:
                # Committing without every stream's resume point could re-segment one from mid-utterance;
                # hold this partition's commit instead (a restart re-reads more, but publishes no duplicate).
                log.warning("partition %d: %d open streams exceed the commit metadata; commit held", p, len(points[p]))
                continue
            result[TopicPartition(self._audio_topic, p)] = (offset, metadata)
        return result

    async def closing(self, partitions: set[TopicPartition] | None) -> None:
        """Revocation or shutdown: the transcriber produces no more output for these streams; the final
        checkpoint's round publishes what is queued."""
        await self._transcriber.release(None if partitions is None else {tp.partition for tp in partitions})

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        """After the final round committed what is safe: the next owner resumes each stream from its
        resume point and transcribes open utterances again."""
        numbers = {tp.partition for tp in partitions}
        self._transcriber.forget(numbers)
        for p in numbers:
            self._processed.pop(p, None)
            self._pending.pop(p, None)
            self._owned.discard(p)

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        """Load the assigned partitions' resume points from their commit metadata."""
        for tp, (_, metadata) in committed.items():
            self._owned.add(tp.partition)
            self._pending[tp.partition] = decode_resume(metadata)

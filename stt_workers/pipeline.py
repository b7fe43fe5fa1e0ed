"""The STT worker: consume audio, hand each stream's audio to the transcriber, produce its events, commit.

This module is the Kafka edge, the same for every engine; the per-engine part is a ``Transcriber``
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

Publish rounds overlap the reading: while one round decodes (in threads; CTranslate2 releases the GIL)
and publishes, the loop goes on consuming audio, and the transcriber queues finals, partials and other
events in its outbox for the next round. Within a round each stream's events go out in order, each as soon
as its decode is done (finals are decoded in the round's first batches). A final queued while a round runs
starts the next round at once: it overtakes the running one (whose partials not started yet are dropped)
and takes the first free decode lane; queued decodes also start a round of their own when a lane idles
while the running round's last batches finish on the others. Each stream's events still go out in the
order they arose, across rounds too. A round takes the commit offsets with its outbox and commits them
after publishing it and after the round it overtook has committed, so an offset is committed only once
every final of the audio before it is produced.

Rebalances: a batch and a rebalance callback never interleave (one lock). On revocation the transcriber
stops producing output for the partition's streams, the worker finishes the running round, publishes what
is queued, commits what is safe, and the transcriber forgets the streams; on assignment the worker loads
the resume points. A batch fetched across a rebalance is dropped and its partitions rewound to their
committed offsets.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord

from palaver.events import AudioFrameV1, DecodeError, StreamStartedV1, StreamStoppedV1, decode, encode
from palaver.events.audio_frame_v1 import AUDIO_EVENT, FrameHeaderError, event_type
from palaver.events.registry import AUDIO_FRAMES, TRANSCRIPTS, topic_name
from palaver.metrics import STT_CONSUMER_LAG, STT_SPEECH_STREAMS
from palaver.settings import Settings
from palaver.streams.clients import headers_dict, make_consumer, make_producer
from palaver.streams.dlq import DlqPolicy, dlq_topics
from stt_workers.engine import Transcription
from stt_workers.processor import MAX_RESUME_METADATA, StreamInfo, decode_resume, encode_resume, resume_key
from stt_workers.transcriber import Decode, OutboxItem, Queued, Transcriber

log = logging.getLogger(__name__)

GROUP = "stt"


class SttWorker:
    def __init__(self, settings: Settings, transcriber: Transcriber):
        self._settings = settings
        self._transcriber = transcriber
        self._outbox = transcriber.outbox
        ns = settings.topic_namespace
        self._audio_topic = topic_name(ns, AUDIO_FRAMES.name)
        self._transcripts_topic = topic_name(ns, TRANSCRIPTS.name)
        self._processed: dict[int, int] = {}  # partition -> next offset after the last record handled
        self._owned: dict[int, int | None] = {}  # partition -> committed offset it was assigned at
        # partition -> {resume_key: sample}: resume points from the commit metadata of streams not seen
        # again yet (carried into every commit until their audio comes)
        self._pending: dict[int, dict[str, int]] = {}
        self._generation = 0  # bumped by each rebalance callback
        self._lock = asyncio.Lock()  # held by a batch, and by a rebalance callback
        self._round: asyncio.Future[None] | None = None  # the newest publish round
        self._rounds = 0  # rounds started
        self._newest_planned = False  # the newest round has handed its decodes to the transcriber
        # stream -> done when its events of the newest round holding it are published (the next round's
        # wait for it)
        self._published: dict[str, asyncio.Future[None]] = {}

    @property
    def _run(self) -> str:
        return f"{self._transcriber.name}:{self._transcriber.model}"

    async def run(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self._settings, GROUP, max_poll_records=500)
        self._producer = make_producer(self._settings)
        await self._producer.start()
        await consumer.start()
        consumer.subscribe([self._audio_topic], listener=_Rebalance(self, consumer))
        self._dlq = DlqPolicy(self._producer, dlq_topics(self._settings, AUDIO_FRAMES), GROUP)
        t = self._transcriber
        log.info("stt worker (%s %s) consuming %s", t.name, t.model, self._audio_topic)
        try:
            while not stop.is_set():
                t.check()  # an engine that refuses the stream (a bad key) stops the worker here
                generation = self._generation
                # Queued output waits for the running round: look again soon, to start the next one.
                batches = await consumer.getmany(timeout_ms=20 if self._outbox else 100, max_records=500)
                async with self._lock:
                    if generation != self._generation:
                        await self._rewind(consumer, batches)
                        continue
                    await self._batch(consumer, batches)
            async with self._lock:
                await t.release(None)
                await self._drain(consumer)
        finally:
            await t.close()
            await consumer.stop()
            await self._producer.stop()

    async def _batch(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        touched: set[str] = set()  # streams that got audio in this batch
        handled = False
        for tp, records in batches.items():
            if tp.partition not in self._owned:
                # Assigned, but the assignment callback has not loaded its resume points yet: read it again.
                consumer.seek(tp, records[0].offset)
                continue
            for record in records:
                await self._handle(record, touched)
                self._processed[record.partition] = record.offset + 1
                handled = True
        self._transcriber.after_batch(touched)
        if handled or self._outbox:
            self._start_round(consumer)
        STT_SPEECH_STREAMS.set(self._transcriber.speaking())
        # Every owned partition, also those that were idle in this batch (their highwater comes with
        # every fetch response).
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None and tp.partition in self._owned:
                STT_CONSUMER_LAG.labels(partition=str(tp.partition)).set(max(0, highwater - await consumer.position(tp)))

    def _start_round(self, consumer: AIOKafkaConsumer) -> None:
        """Start a publish round for everything queued so far. While one runs the queue grows until it
        ends (meanwhile the loop goes on reading audio, so the decoder and the VAD overlap), unless a
        final waits in it: then a new round starts at once and overtakes the running one, whose
        partials not started yet are dropped, so a final waits for a free decode lane, not for the end of
        the round. Likewise when a decode lane idles while the running round's last batches finish on
        the others (``_lane_idle``): the queued decodes take it. Each stream's events still go out in
        order across rounds, and rounds commit in order. The offsets to commit are taken now, with the
        outbox: they are safe once this round's events, and the earlier rounds', are produced, because
        every final of audio handled so far is in them."""
        previous = self._round
        if previous is not None:
            if previous.done():
                previous.result()  # raises what the last round met: the worker stops, input is re-read
                previous = None
            elif not (self._outbox.final_waiting or self._lane_idle()):
                return
        outbox = self._outbox.take()
        offsets = self._committable_now(consumer)
        self._rounds += 1
        self._newest_planned = False
        self._round = asyncio.ensure_future(self._publish_round(consumer, outbox, offsets, previous, self._rounds))

    def _lane_idle(self) -> bool:
        """Decodes wait, the running rounds have started all their batches, and a decode lane is idle:
        the queued decodes would wait for nothing but the end of a round (its last batches, on the other
        lanes). Under load no lane idles, and rounds follow each other as before."""
        return self._newest_planned and self._outbox.decode_waiting and self._transcriber.idle_lane()

    async def _finish_round(self) -> None:
        if self._round is not None:
            round_, self._round = self._round, None
            await round_  # it awaits the rounds it overtook

    async def _publish_round(self, consumer: AIOKafkaConsumer, outbox: list[Queued],
                             offsets: dict[TopicPartition, tuple[int, str]],
                             previous: asyncio.Future[None] | None = None, number: int = 0) -> None:  # fmt: skip
        """Decode every request of the round together (the local path batches across streams) and publish
        each stream's events in the order they arose, each as soon as it and the stream's events before it
        (in this round and in a ``previous`` round still running) are ready: a final decoded in the round's
        first batch does not wait for the partials' batches. Commit once everything is delivered, and the
        previous round has committed."""
        loop = asyncio.get_running_loop()
        decodes = [item for _, item in outbox if isinstance(item, Decode)]
        results: dict[int, asyncio.Future[Transcription | None]] = {id(d): loop.create_future() for d in decodes}

        def ready(index: int, result: Transcription | None) -> None:
            results[id(decodes[index])].set_result(result)

        def planned() -> None:
            if number == self._rounds:
                self._newest_planned = True

        async def decode_all() -> None:
            try:
                if decodes:
                    planned()  # the transcriber plans its batches before it first awaits
                    await self._transcriber.decode([d.request for d in decodes], ready)
            finally:  # a failed decode fails the round (the worker stops and the input is read again)
                for future in results.values():
                    if not future.done():
                        future.set_exception(RuntimeError("the round's decoding failed"))

        if not decodes:
            planned()
        streams: dict[str, list[OutboxItem]] = {}
        for stream_id, item in outbox:
            streams.setdefault(stream_id, []).append(item)
        deliveries: list[asyncio.Future[object]] = []
        # Each stream publishes after its events of the rounds before this one.
        after = {stream: self._published.get(stream) for stream in streams}
        done = {stream: loop.create_future() for stream in streams}
        self._published.update(done)

        async def publish(stream: str, items: list[OutboxItem]) -> None:
            try:
                before = after[stream]
                if before is not None:
                    await asyncio.wait({before})  # not ``await``: cancelling this round must not cancel it
                for item in items:
                    if isinstance(item, Decode):
                        value = item.publish(await results[id(item)])
                        if value is None:
                            continue
                        meeting_id, payload = value
                    else:
                        meeting_id, payload = item
                    delivery = await self._producer.send(self._transcripts_topic, payload, key=meeting_id.encode())
                    deliveries.append(delivery)
            finally:
                if self._published.get(stream) is done[stream]:
                    del self._published[stream]
                done[stream].set_result(None)

        await asyncio.gather(decode_all(), *(publish(stream, items) for stream, items in streams.items()))
        if deliveries:
            await asyncio.gather(*deliveries)
        if previous is not None:
            await previous  # its failure fails this round too
        await self._commit_offsets(consumer, offsets)

    async def _rewind(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """A batch fetched across a rebalance: its records may lie past the offsets this worker resumes
        from, so drop it and read the partitions it still owns again from their committed offsets."""
        for tp in batches:
            if tp.partition not in self._owned or tp not in consumer.assignment():
                continue
            committed = self._owned[tp.partition]
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)

    async def _handle(self, record: ConsumerRecord, touched: set[str]) -> None:
        headers = headers_dict(record.headers)
        kind = event_type(headers)
        try:
            if kind == AUDIO_EVENT:
                frame = AudioFrameV1.from_kafka(record.value, headers)
                await self._on_frame(frame, record)
                touched.add(frame.stream_id)
            else:
                event = decode(record.value)
                if isinstance(event, StreamStartedV1):
                    await self._on_started(event, record.partition)
                elif isinstance(event, StreamStoppedV1):
                    await self._on_stopped(event, record)
                else:
                    raise DecodeError(f"{type(event).__name__} does not belong on the audio topic")
        except (FrameHeaderError, DecodeError) as exc:
            await self._dlq.dead_letter(record, str(exc))
            return
        self._dlq.ok()

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
        if resume is None:  # else the resumed stream starts with the first frame it needs
            await self._transcriber.open(info, partition, event.first_sample)
        self._outbox.emit(event.stream_id, event.meeting_id, encode(event.model_copy(update={"run": self._run})))

    async def _on_frame(self, frame: AudioFrameV1, record: ConsumerRecord) -> None:
        if not self._transcriber.holds(frame.stream_id):
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
        resume = self._resume_point(event.stream_id, record.partition)
        if resume is not None and event.end_sample >= resume:  # else an earlier session's stop
            self._drop_resume_point(event.stream_id, record.partition)
        last = (event.meeting_id, encode(event.model_copy(update={"run": self._run})))
        await self._transcriber.stop(event.stream_id, record.offset, last)

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

    def _committable_now(self, consumer: AIOKafkaConsumer, only: set[TopicPartition] | None = None) -> dict[TopicPartition, tuple[int, str]]:
        assigned = consumer.assignment()
        return {tp: o for tp, o in self.committable().items() if tp in assigned and (only is None or tp in only)}

    async def _commit_offsets(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, tuple[int, str]]) -> None:
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on; the next owner resumes from the last commit, and ids dedupe the repeat.
            log.warning("commit failed (rebalance): %s", exc)

    async def _drain(self, consumer: AIOKafkaConsumer) -> None:
        """Finish the running round, then decode and publish what is queued, and commit."""
        await self._finish_round()
        self._start_round(consumer)
        await self._finish_round()

    async def revoke(self, consumer: AIOKafkaConsumer, revoked: set[TopicPartition]) -> None:
        """Commit what is safe for the revoked partitions (finals already produced), then forget their
        streams: the next owner resumes each from its resume point and transcribes open utterances again."""
        self._generation += 1
        async with self._lock:
            partitions = {tp.partition for tp in revoked}
            await self._transcriber.release(partitions)
            await self._drain(consumer)
            self._transcriber.forget(partitions)
            for p in partitions:
                self._processed.pop(p, None)
                self._pending.pop(p, None)
                self._owned.pop(p, None)
                if str(p) in _lag_labels():
                    STT_CONSUMER_LAG.remove(str(p))  # another worker reports it now

    async def assign(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        """Load the assigned partitions' committed offsets and resume points."""
        self._generation += 1
        async with self._lock:
            committed = await fetch_committed(consumer, assigned)
            for tp in assigned:
                offset, metadata = committed.get(tp, (None, ""))
                self._owned[tp.partition] = offset
                self._pending[tp.partition] = decode_resume(metadata)
        log.info("assigned %s", sorted(tp.partition for tp in assigned))


def _lag_labels() -> set[str]:
    return {sample.labels["partition"] for metric in STT_CONSUMER_LAG.collect() for sample in metric.samples}


async def fetch_committed(consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> dict[TopicPartition, tuple[int | None, str]]:
    """Committed offset (None: none yet) and metadata per partition. aiokafka's public ``committed()``
    returns the offset only; the metadata comes from the group coordinator's fetch."""
    if not partitions:
        return {}
    found = await consumer._coordinator.fetch_committed_offsets(list(partitions))
    return {tp: (om.offset if om.offset >= 0 else None, om.metadata or "") for tp, om in found.items()}


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: SttWorker, consumer: AIOKafkaConsumer):
        self._worker = worker
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._worker.revoke(self._consumer, set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._worker.assign(self._consumer, set(assigned))


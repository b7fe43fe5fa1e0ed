"""The STT worker: consume audio, segment per stream, decode off the event loop, produce finals, commit.

Commit policy: a partition's offset is committed only up to the first frame a restart needs: per stream,
the frame holding the segmenter's resume point (``Segmenter.keep_from``, before any unfinished utterance
and its pre-roll). The commit metadata carries every stream's resume point, because the offset is the
earliest of them: a restarted owner starts each stream's segmenter at its own point and skips the audio
before it. From there the segmenter finds the same boundaries, so the same utterance ids (hash of stream
and start sample) and the same audio to decode: a final published before the crash but not yet committed
comes again as the same utterance, which downstream upserts by id.

Decode rounds overlap the reading: while one round decodes (in a thread; CTranslate2 releases the GIL)
and publishes, the loop goes on consuming and segmenting audio (the VAD), queueing finals, partials and
other events for the next round; a stream's queued partial is replaced by a newer one. A round takes
the commit offsets with its queue and commits them after publishing it, so an offset is committed only
once every final of the audio before it is produced.

Rebalances: a batch and a rebalance callback never interleave (one lock). On revocation the worker
finishes the running round, decodes and publishes what is queued, commits what is safe and forgets the partition's streams; on assignment it loads the resume points. A
batch fetched across a rebalance is dropped and its partitions rewound to their committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord

from palaver.events import AudioFrameV1, DecodeError, StreamStartedV1, StreamStoppedV1, decode, encode
from palaver.events.audio_frame_v1 import AUDIO_EVENT, FrameHeaderError, event_type
from palaver.events.registry import AUDIO_FRAMES, TRANSCRIPTS, topic_name
from palaver.metrics import (
    STT_ACTIVE_STREAMS,
    STT_CONSUMER_LAG,
    STT_FINAL_LATENCY,
    STT_PARTIAL_LATENCY,
    STT_SPEECH_STREAMS,
    STT_UTTERANCES,
)
from palaver.settings import Settings
from palaver.streams.clients import headers_dict, make_consumer, make_producer
from palaver.streams.dlq import DlqPolicy, dlq_topics
from stt_workers.engine import SttEngine, Transcription
from stt_workers.processor import (
    MAX_RESUME_METADATA,
    OpenUtterance,
    StreamInfo,
    StreamState,
    decode_resume,
    encode_resume,
    final_event,
    partial_event,
    progress_event,
    resume_key,
)
from stt_workers.scheduler import DecodeRequest, DecodeScheduler
from stt_workers.segmenter import Scorer, Segment, Segmenter, SegmenterPolicy

log = logging.getLogger(__name__)

GROUP = "stt"
PARTIAL_INTERVAL_MS = 1000  # re-decode the open utterance after this much new audio
PROGRESS_INTERVAL_MS = 1000  # publish a silent stream's progress at most this often (media time)


def segmenter_policy(settings: Settings, sample_rate: int) -> SegmenterPolicy:
    return SegmenterPolicy(
        sample_rate=sample_rate,
        threshold=settings.vad_threshold,
        min_silence_ms=settings.vad_min_silence_ms,
        min_speech_ms=settings.vad_min_speech_ms,
        pad_ms=settings.vad_pad_ms,
        max_utterance_ms=settings.max_utterance_ms,
    )


class SttWorker:
    def __init__(self, settings: Settings, engine: SttEngine, scorer: Scorer):
        self._settings = settings
        self._engine = engine
        self._scorer = scorer
        ns = settings.topic_namespace
        self._audio_topic = topic_name(ns, AUDIO_FRAMES.name)
        self._transcripts_topic = topic_name(ns, TRANSCRIPTS.name)
        self._streams: dict[str, StreamState] = {}
        self._processed: dict[int, int] = {}  # partition -> next offset after the last record handled
        self._touched: set[str] = set()  # streams that got audio in the current batch
        self._owned: dict[int, int | None] = {}  # partition -> committed offset it was assigned at
        # partition -> {resume_key: sample}: resume points from the commit metadata of streams not seen
        # again yet (carried into every commit until their audio comes)
        self._pending: dict[int, dict[str, int]] = {}
        self._generation = 0  # bumped by each rebalance callback
        self._lock = asyncio.Lock()  # held by a batch, and by a rebalance callback
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        # Output queued for the next decode round, in order; one round runs at a time.
        self._outbox: list[_Decode | tuple[str, bytes]] = []
        self._queued_partials: dict[str, _Decode] = {}  # stream -> its partial request in the outbox
        self._round: asyncio.Future[None] | None = None
        decode_batch = getattr(engine, "decode", None) or (
            lambda batch, language, with_words: [engine.transcribe(a, language) for a in batch]
        )
        self._scheduler = DecodeScheduler(decode_batch, self._executor, settings.stt_language, engine.name,
                                          max_batch=settings.stt_max_batch)  # fmt: skip

    async def run(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self._settings, GROUP, max_poll_records=500)
        self._producer = make_producer(self._settings)
        await self._producer.start()
        await consumer.start()
        consumer.subscribe([self._audio_topic], listener=_Rebalance(self, consumer))
        self._dlq = DlqPolicy(self._producer, dlq_topics(self._settings, AUDIO_FRAMES), GROUP)
        log.info("stt worker (%s %s) consuming %s", self._engine.name, self._engine.model, self._audio_topic)
        try:
            while not stop.is_set():
                generation = self._generation
                # Queued output waits for the running round: look again soon, to start the next one.
                batches = await consumer.getmany(timeout_ms=20 if self._outbox else 100, max_records=500)
                async with self._lock:
                    if generation != self._generation:
                        await self._rewind(consumer, batches)
                        continue
                    await self._batch(consumer, batches)
            async with self._lock:
                await self._drain(consumer)
        finally:
            await consumer.stop()
            await self._producer.stop()
            self._executor.shutdown(wait=False)

    async def _batch(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        self._touched.clear()
        handled = False
        for tp, records in batches.items():
            if tp.partition not in self._owned:
                # Assigned, but the assignment callback has not loaded its resume points yet: read it again.
                consumer.seek(tp, records[0].offset)
                continue
            for record in records:
                await self._handle(record)
                self._processed[record.partition] = record.offset + 1
                handled = True
        # Partials and progress once per stream per batch, for the newest audio only: when the
        # worker falls behind, batches grow and stale partial decodes are skipped, not queued.
        for stream in sorted(self._touched):
            state = self._streams.get(stream)
            if state is not None:
                self._partial(state)
                self._progress(state)
        if handled or self._outbox:
            self._start_round(consumer)
        STT_SPEECH_STREAMS.set(sum(1 for state in self._streams.values() if state.segmenter.in_speech))
        for tp in batches:
            highwater = consumer.highwater(tp)
            if highwater is not None and tp in consumer.assignment():
                STT_CONSUMER_LAG.labels(partition=str(tp.partition)).set(max(0, highwater - await consumer.position(tp)))

    def _start_round(self, consumer: AIOKafkaConsumer) -> None:
        """Start a decode round for everything queued so far, unless one is running: then the queue
        grows until it ends (meanwhile the loop goes on reading and segmenting audio, so the decoder and
        the VAD overlap). The offsets to commit are taken now, with the outbox: they are safe once this
        round's events are produced, because every final of audio handled so far is in this round."""
        if self._round is not None:
            if not self._round.done():
                return
            self._round.result()  # raises what the last round met: the worker stops, input is re-read
        outbox, self._outbox = self._outbox, []
        self._queued_partials.clear()
        offsets = self._committable_now(consumer)
        self._round = asyncio.ensure_future(self._publish_round(consumer, outbox, offsets))

    async def _finish_round(self) -> None:
        if self._round is not None:
            round_, self._round = self._round, None
            await round_

    async def _publish_round(self, consumer: AIOKafkaConsumer, outbox: list[_Decode | tuple[str, bytes]],
                             offsets: dict[TopicPartition, tuple[int, str]]) -> None:  # fmt: skip
        """Decode every request of the round together (the scheduler batches across streams), publish
        the round's events in the order they arose, so each stream's events stay in order, then commit."""
        outbox = [item for item in outbox if not (isinstance(item, _Decode) and item.superseded)]
        requests = [item.request for item in outbox if isinstance(item, _Decode)]
        results = iter(await self._scheduler.run(requests)) if requests else iter(())
        deliveries = []
        for item in outbox:
            if isinstance(item, _Decode):
                value = item.publish(next(results))
                if value is None:
                    continue
                meeting_id, payload = value
            else:
                meeting_id, payload = item
            deliveries.append(await self._producer.send(self._transcripts_topic, payload, key=meeting_id.encode()))
        if deliveries:
            await asyncio.gather(*deliveries)
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

    async def _handle(self, record: ConsumerRecord) -> None:
        headers = headers_dict(record.headers)
        kind = event_type(headers)
        try:
            if kind == AUDIO_EVENT:
                frame = AudioFrameV1.from_kafka(record.value, headers)
                await self._on_frame(frame, record)
            else:
                event = decode(record.value)
                if isinstance(event, StreamStartedV1):
                    await self._on_started(event, record.partition)
                elif isinstance(event, StreamStoppedV1):
                    await self._on_stopped(event, record.partition)
                else:
                    raise DecodeError(f"{type(event).__name__} does not belong on the audio topic")
        except (FrameHeaderError, DecodeError) as exc:
            await self._dlq.dead_letter(record, str(exc))
            return
        self._dlq.ok()

    def _state(self, info: StreamInfo, partition: int, first_sample: int) -> StreamState:
        state = self._streams.get(info.stream_id)
        if state is None:
            state = StreamState(info=info, segmenter=self._new_segmenter(info, first_sample), partition=partition)
            self._streams[info.stream_id] = state
            STT_ACTIVE_STREAMS.set(len(self._streams))
        return state

    def _resume_point(self, stream_id: str, partition: int) -> int | None:
        """Where the previous owner's segmentation of this stream resumes (None: not a resumed stream)."""
        return self._pending.get(partition, {}).get(resume_key(stream_id))

    def _drop_resume_point(self, stream_id: str, partition: int) -> None:
        self._pending.get(partition, {}).pop(resume_key(stream_id), None)

    def _new_segmenter(self, info: StreamInfo, first_sample: int) -> Segmenter:
        return Segmenter(self._scorer, segmenter_policy(self._settings, info.sample_rate), first_sample)

    async def _on_started(self, event: StreamStartedV1, partition: int) -> None:
        info = StreamInfo(event.meeting_id, event.speaker_id, event.stream_id, event.sample_rate, event.stream_start_ms)
        resume = self._resume_point(event.stream_id, partition)
        if resume is not None and event.first_sample > resume:  # a session after the one that was resumed
            self._drop_resume_point(event.stream_id, partition)
            resume = None
        if resume is None:  # else the resumed segmenter starts with the first frame it needs
            self._state(info, partition, event.first_sample)
        self._emit(event.meeting_id, encode(event.model_copy(update={"run": self._run})))

    async def _on_frame(self, frame: AudioFrameV1, record: ConsumerRecord) -> None:
        info = StreamInfo(frame.meeting_id, frame.speaker_id, frame.stream_id, frame.sample_rate, frame.stream_start_ms)
        first_sample = frame.first_sample
        if frame.stream_id not in self._streams:
            resume = self._resume_point(frame.stream_id, record.partition)
            if resume is not None:
                if frame.end_sample <= resume:
                    return  # segmented before the resume point: its utterances are already published
                self._drop_resume_point(frame.stream_id, record.partition)
                first_sample = resume
        state = self._state(info, record.partition, first_sample)
        state.last_frame = (record.timestamp, frame.end_sample)
        segments = state.accept(frame, record.offset, lambda first: self._new_segmenter(info, first))
        for segment in segments:
            self._finalize(state, segment)
        self._touched.add(frame.stream_id)

    async def _on_stopped(self, event: StreamStoppedV1, partition: int) -> None:
        resume = self._resume_point(event.stream_id, partition)
        if resume is not None and event.end_sample >= resume:  # else an earlier session's stop
            self._drop_resume_point(event.stream_id, partition)
        state = self._streams.pop(event.stream_id, None)
        STT_ACTIVE_STREAMS.set(len(self._streams))
        if state is not None:
            for segment in state.segmenter.flush():
                self._finalize(state, segment)
        self._emit(event.meeting_id, encode(event.model_copy(update={"run": self._run})))

    @property
    def _run(self) -> str:
        return f"{self._engine.name}:{self._engine.model}"

    def _partial(self, state: StreamState) -> None:
        """Ask for a re-decode of the open utterance once enough new audio arrived."""
        segment = state.segmenter.open_segment()
        if segment is None:
            return
        open_utt = state.open_utterance
        if open_utt is None or open_utt.start_sample != segment.start_sample:
            open_utt = state.open_utterance = OpenUtterance(segment.start_sample, decoded_until=segment.start_sample)
        interval = state.info.sample_rate * PARTIAL_INTERVAL_MS // 1000
        if segment.end_sample - open_utt.decoded_until < interval:
            return
        open_utt.decoded_until = segment.end_sample
        language, engine, model = self._settings.stt_language, self._engine.name, self._engine.model

        def publish(result: Transcription | None) -> tuple[str, bytes] | None:
            words = tuple(result.text.split()) if result is not None else ()
            if not words or state.open_utterance is not open_utt:
                return None  # dropped as stale, silence, or the utterance ended meanwhile
            stable, unstable = open_utt.update(words)
            event = partial_event(state.info, segment, open_utt, stable, unstable, language=language,
                                  engine=engine, model=model)  # fmt: skip
            STT_PARTIAL_LATENCY.observe(max(0.0, time.time() - state.audio_time_ms(segment.end_sample) / 1000))
            return state.info.meeting_id, encode(event)

        request = _Decode(DecodeRequest("partial", segment.audio, state.info.sample_rate), publish)
        queued = self._queued_partials.get(state.info.stream_id)
        if queued is not None:  # still waiting for a round: the newer audio makes it stale
            queued.superseded = True
        self._queued_partials[state.info.stream_id] = request
        self._outbox.append(request)

    def _progress(self, state: StreamState) -> None:
        """In silence, tell the merger how far this stream is settled, so silent streams do not hold
        the meeting's watermark back."""
        if state.segmenter.in_speech:
            return
        event = progress_event(state.info, state.segmenter.settled_sample, self._run)
        if event.settled_ms - state.progress_ms >= PROGRESS_INTERVAL_MS:
            state.progress_ms = event.settled_ms
            self._emit(state.info.meeting_id, encode(event))

    def _finalize(self, state: StreamState, segment: Segment) -> None:
        info = state.info
        if state.open_utterance is not None and state.open_utterance.start_sample == segment.start_sample:
            state.open_utterance = None
        speech_ended_ms = state.audio_time_ms(segment.end_sample)
        language, engine, model = self._settings.stt_language, self._engine.name, self._engine.model

        def publish(result: Transcription | None) -> tuple[str, bytes] | None:
            assert result is not None, "finals are never dropped"
            event = final_event(info, segment, result, language=language, engine=engine, model=model)
            if event is None:
                return None
            STT_UTTERANCES.labels(engine=engine).inc()
            STT_FINAL_LATENCY.observe(max(0.0, time.time() - speech_ended_ms / 1000))
            log.info("%s %d-%d ms: %s", info.stream_id, event.start_ms, event.end_ms, event.text)
            return info.meeting_id, encode(event)

        self._outbox.append(_Decode(DecodeRequest("final", segment.audio, info.sample_rate), publish))

    def _emit(self, meeting_id: str, value: bytes) -> None:
        """Publish after the batch's decodes, in order with the stream's other events."""
        self._outbox.append((meeting_id, value))

    def committable(self) -> dict[TopicPartition, tuple[int, str]]:
        """Per partition handled: (offset, metadata). The offset is the first frame still needed by a
        stream's resume point, else everything handled; the metadata holds every stream's resume point
        (``encode_resume``), those not seen again since the assignment included."""
        offsets = dict(self._processed)
        points = {p: dict(self._pending.get(p, {})) for p in offsets}
        for stream, state in self._streams.items():
            if state.partition not in offsets:
                continue
            needed = state.committable_offset()
            if needed is not None:
                offsets[state.partition] = min(offsets[state.partition], needed)
            points[state.partition][resume_key(stream)] = state.segmenter.keep_from
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
        streams: the next owner resumes each from its resume point and decodes open utterances again."""
        self._generation += 1
        async with self._lock:
            await self._drain(consumer)
            partitions = {tp.partition for tp in revoked}
            for stream, state in list(self._streams.items()):
                if state.partition in partitions:
                    del self._streams[stream]
            for p in partitions:
                self._processed.pop(p, None)
                self._pending.pop(p, None)
                self._owned.pop(p, None)
            STT_ACTIVE_STREAMS.set(len(self._streams))

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


@dataclass
class _Decode:
    """A decode request in the outbox and how to turn its result into an event (None: nothing)."""

    request: DecodeRequest
    publish: Callable[[Transcription | None], tuple[str, bytes] | None]
    superseded: bool = False  # a newer partial of the same stream was queued before this one's round

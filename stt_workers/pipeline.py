"""The STT worker: consume audio, segment per stream, decode off the event loop, produce finals, commit.

Commit policy: a partition's offset is committed only up to the first frame still holding audio of an
unfinished utterance, so after a crash or a rebalance the new owner re-decodes that utterance; its id
(hash of stream and start sample) is unchanged, so downstream deduplicates the repeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from palaver.events import AudioFrameV1, DecodeError, StreamStartedV1, StreamStoppedV1, decode, encode
from palaver.events.audio_frame_v1 import AUDIO_EVENT, FrameHeaderError, event_type
from palaver.events.registry import AUDIO_FRAMES, TRANSCRIPTS, topic_name
from palaver.metrics import STT_ACTIVE_STREAMS, STT_DECODE_SECONDS, STT_FINAL_LATENCY, STT_UTTERANCES
from palaver.settings import Settings
from palaver.streams.clients import headers_dict, make_consumer, make_producer
from palaver.streams.dlq import DlqPolicy, dlq_topics
from stt_workers.engine import SttEngine
from stt_workers.processor import StreamInfo, StreamState, final_event
from stt_workers.segmenter import Scorer, Segment, Segmenter, SegmenterPolicy

log = logging.getLogger(__name__)

GROUP = "stt"


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
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")

    async def run(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self._settings, GROUP, max_poll_records=500)
        self._producer = make_producer(self._settings)
        await self._producer.start()
        await consumer.start()
        consumer.subscribe([self._audio_topic], listener=_Revocation(self, consumer))
        self._dlq = DlqPolicy(self._producer, dlq_topics(self._settings, AUDIO_FRAMES), GROUP)
        log.info("stt worker (%s %s) consuming %s", self._engine.name, self._engine.model, self._audio_topic)
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=100, max_records=500)
                for records in batches.values():
                    for record in records:
                        await self._handle(record)
                        self._processed[record.partition] = record.offset + 1
                if batches:
                    await self._commit(consumer)
        finally:
            await consumer.stop()
            await self._producer.stop()
            self._executor.shutdown(wait=False)

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
                    await self._on_stopped(event)
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

    def _new_segmenter(self, info: StreamInfo, first_sample: int) -> Segmenter:
        return Segmenter(self._scorer, segmenter_policy(self._settings, info.sample_rate), first_sample)

    async def _on_started(self, event: StreamStartedV1, partition: int) -> None:
        info = StreamInfo(event.meeting_id, event.speaker_id, event.stream_id, event.sample_rate, event.stream_start_ms)
        self._state(info, partition, event.first_sample)
        await self._produce_event(event.meeting_id, encode(event))

    async def _on_frame(self, frame: AudioFrameV1, record: ConsumerRecord) -> None:
        info = StreamInfo(frame.meeting_id, frame.speaker_id, frame.stream_id, frame.sample_rate, frame.stream_start_ms)
        state = self._state(info, record.partition, frame.first_sample)
        segments = state.accept(frame, record.offset, lambda first: self._new_segmenter(info, first))
        for segment in segments:
            await self._finalize(state.info, segment)

    async def _on_stopped(self, event: StreamStoppedV1) -> None:
        state = self._streams.pop(event.stream_id, None)
        STT_ACTIVE_STREAMS.set(len(self._streams))
        if state is not None:
            for segment in state.segmenter.flush():
                await self._finalize(state.info, segment)
        await self._produce_event(event.meeting_id, encode(event))

    async def _finalize(self, info: StreamInfo, segment: Segment) -> None:
        ended = time.perf_counter()
        language = self._settings.stt_language
        result = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._engine.transcribe, segment.audio, language
        )
        STT_DECODE_SECONDS.labels(engine=self._engine.name).observe(time.perf_counter() - ended)
        event = final_event(info, segment, result, language=language, engine=self._engine.name, model=self._engine.model)
        if event is None:
            return
        await self._produce_event(info.meeting_id, encode(event))
        STT_UTTERANCES.labels(engine=self._engine.name).inc()
        STT_FINAL_LATENCY.observe(time.perf_counter() - ended)
        log.info("%s %d-%d ms: %s", info.stream_id, event.start_ms, event.end_ms, event.text)

    async def _produce_event(self, meeting_id: str, value: bytes) -> None:
        await self._producer.send_and_wait(self._transcripts_topic, value, key=meeting_id.encode())

    def committable(self) -> dict[TopicPartition, int]:
        """Per partition: the first frame still needed by an open utterance, else everything handled."""
        offsets = dict(self._processed)
        for state in self._streams.values():
            needed = state.committable_offset()
            if needed is not None and state.partition in offsets:
                offsets[state.partition] = min(offsets[state.partition], needed)
        return {TopicPartition(self._audio_topic, p): o for p, o in offsets.items()}

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        offsets = {tp: o for tp, o in self.committable().items() if tp in consumer.assignment()}
        if offsets:
            await consumer.commit(offsets)

    def forget_partitions(self, partitions: set[int]) -> None:
        for stream, state in list(self._streams.items()):
            if state.partition in partitions:
                del self._streams[stream]
        for p in partitions:
            self._processed.pop(p, None)
        STT_ACTIVE_STREAMS.set(len(self._streams))


class _Revocation(ConsumerRebalanceListener):
    """On revocation, commit what is safe (finals already produced) and drop the revoked streams: the new
    owner resumes from the committed offset and re-decodes any open utterance."""

    def __init__(self, worker: SttWorker, consumer: AIOKafkaConsumer):
        self._worker = worker
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        offsets = {tp: o for tp, o in self._worker.committable().items() if tp in set(revoked)}
        if offsets:
            try:
                await self._consumer.commit(offsets)
            except Exception as exc:  # the group already moved on: the new owner re-reads, ids dedupe
                log.warning("commit on revocation failed: %s", exc)
        self._worker.forget_partitions({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        log.info("assigned %s", sorted(tp.partition for tp in assigned))

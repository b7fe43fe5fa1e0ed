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
from stt_workers.engine import SttEngine, Transcription
from stt_workers.processor import (
    OpenUtterance,
    StreamInfo,
    StreamState,
    final_event,
    partial_event,
    progress_event,
)
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
                self._touched.clear()
                for records in batches.values():
                    for record in records:
                        await self._handle(record)
                        self._processed[record.partition] = record.offset + 1
                # Partials and progress once per stream per batch, for the newest audio only: when the
                # worker falls behind, batches grow and stale partial decodes are skipped, not queued.
                for stream in sorted(self._touched):
                    state = self._streams.get(stream)
                    if state is not None:
                        await self._partial(state)
                        await self._progress(state)
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
        await self._produce_event(event.meeting_id, encode(event.model_copy(update={"run": self._run})))

    async def _on_frame(self, frame: AudioFrameV1, record: ConsumerRecord) -> None:
        info = StreamInfo(frame.meeting_id, frame.speaker_id, frame.stream_id, frame.sample_rate, frame.stream_start_ms)
        state = self._state(info, record.partition, frame.first_sample)
        segments = state.accept(frame, record.offset, lambda first: self._new_segmenter(info, first))
        for segment in segments:
            await self._finalize(state, segment)
        self._touched.add(frame.stream_id)

    async def _on_stopped(self, event: StreamStoppedV1) -> None:
        state = self._streams.pop(event.stream_id, None)
        STT_ACTIVE_STREAMS.set(len(self._streams))
        if state is not None:
            for segment in state.segmenter.flush():
                await self._finalize(state, segment)
        await self._produce_event(event.meeting_id, encode(event.model_copy(update={"run": self._run})))

    @property
    def _run(self) -> str:
        return f"{self._engine.name}:{self._engine.model}"

    async def _decode(self, segment: Segment) -> Transcription:
        started = time.perf_counter()
        result = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._engine.transcribe, segment.audio, self._settings.stt_language
        )
        STT_DECODE_SECONDS.labels(engine=self._engine.name).observe(time.perf_counter() - started)
        return result

    async def _partial(self, state: StreamState) -> None:
        """Re-decode the open utterance once enough new audio arrived, and publish what it says."""
        segment = state.segmenter.open_segment()
        if segment is None:
            return
        open_utt = state.open_utterance
        if open_utt is None or open_utt.start_sample != segment.start_sample:
            open_utt = state.open_utterance = OpenUtterance(segment.start_sample, decoded_until=segment.start_sample)
        interval = state.info.sample_rate * PARTIAL_INTERVAL_MS // 1000
        if segment.end_sample - open_utt.decoded_until < interval:
            return
        result = await self._decode(segment)
        open_utt.decoded_until = segment.end_sample
        if not result.words:
            return
        stable, unstable = open_utt.update(tuple(w.word for w in result.words))
        event = partial_event(state.info, segment, open_utt, stable, unstable, language=self._settings.stt_language,
                              engine=self._engine.name, model=self._engine.model)  # fmt: skip
        await self._produce_event(state.info.meeting_id, encode(event))

    async def _progress(self, state: StreamState) -> None:
        """In silence, tell the merger how far this stream is settled, so silent streams do not hold
        the meeting's watermark back."""
        if state.segmenter.in_speech:
            return
        event = progress_event(state.info, state.segmenter.settled_sample, self._run)
        if event.settled_ms - state.progress_ms >= PROGRESS_INTERVAL_MS:
            state.progress_ms = event.settled_ms
            await self._produce_event(state.info.meeting_id, encode(event))

    async def _finalize(self, state: StreamState, segment: Segment) -> None:
        info = state.info
        if state.open_utterance is not None and state.open_utterance.start_sample == segment.start_sample:
            state.open_utterance = None
        ended = time.perf_counter()
        language = self._settings.stt_language
        result = await self._decode(segment)
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

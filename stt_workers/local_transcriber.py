"""The local STT path: Silero VAD segments each stream, Whisper decodes finals and partials in batches.

Resume point of a stream: the segmenter's ``keep_from``, a sample in silence before any unfinished
utterance and its pre-roll, from which a fresh segmenter finds the same boundaries (hence the same
utterance ids and the same audio to decode). Partials: the open utterance is re-decoded after each second
of new audio (LocalAgreement keeps agreed words stable); finals are decoded once more at end of speech.
Decode requests wait in the transcriber's queue with what their event needs (``_Final``, ``_Partial``);
the worker takes them for its round, begins them on the batch scheduler (``decode``) and turns each result
into its event (``event``). While a final waits for a round, the scheduler starts no more partials
(``DecodeScheduler.final_waiting``), so that round need not wait for them.

Language: each stream decodes in its own language (``StreamInfo.language``: its client's choice, else
``PALAVER_STT_LANGUAGE``), and the scheduler never batches two languages together. An English-only model
(``*.en``, like the bundled tiny.en) can decode nothing but English: a stream asking for another language is
decoded as English, its events say ``language="en"``, and the worker logs one warning when it opens the
stream.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiokafka.structs import ConsumerRecord

from palaver.events import AudioFrameV1, encode
from palaver.languages import ENGLISH
from palaver.metrics import STT_ACTIVE_STREAMS, STT_FINAL_LATENCY, STT_PARTIAL_LATENCY, STT_UTTERANCES
from palaver.settings import Settings
from stt_workers.engine import SttEngine, Transcription
from stt_workers.processor import (
    OpenUtterance,
    StreamInfo,
    StreamState,
    final_event,
    partial_event,
    progress_event,
)
from stt_workers.scheduler import DecodeRequest, DecodeScheduler, Decoding
from stt_workers.segmenter import Scorer, Segment, Segmenter, SegmenterPolicy
from stt_workers.transcriber import Decode, KeyedEvent, OutputQueue, Pending, Queued, ResumePoint
from stt_workers.vocabulary import vocabulary_prompt, vocabulary_terms

log = logging.getLogger(__name__)

PARTIAL_INTERVAL_MS = 1000  # re-decode the open utterance after this much new audio
PROGRESS_INTERVAL_MS = 250  # publish a silent stream's progress at most this often (media time): a quiet speaker's box is final about this soon after the pause rule (bench/README.md, "A quiet speaker's box")


PROMPT_RESET_MS = 10_000  # after this much silence an utterance decodes without the text before it
PROMPT_KEEP_CHARS = 400  # previous text kept per stream: more than the decoder's prompt takes (64 tokens)


class PromptHistory:
    """A stream's recent final text, the prompt its next utterance decodes with (Whisper's previous-text
    conditioning: words said just before help with names, casing and the first words of a piece). Finals
    are added in the stream's order; the prompt for an utterance starting at a sample is the text of the
    finals that ended before it, empty after ``reset_ms`` of silence (a new turn of talk, and a decoder
    that loops on a phrase does not feed that loop to the next utterance forever)."""

    def __init__(self, sample_rate: int, reset_ms: int = PROMPT_RESET_MS, keep_chars: int = PROMPT_KEEP_CHARS):
        self._reset = sample_rate * reset_ms // 1000
        self._keep = keep_chars
        self._text = ""
        self._end = 0  # end sample of the last final added

    def add(self, start_sample: int, end_sample: int, text: str) -> None:
        """The final of the utterance from ``start_sample`` to ``end_sample``, after every final added
        before; after a long silence it starts the text over."""
        if not text.strip():
            return
        if not self.prompt(start_sample):
            self._text = ""
        self._text = f"{self._text} {text.strip()}".strip()[-self._keep :]
        self._end = max(self._end, end_sample)

    def prompt(self, start_sample: int) -> str:
        """The previous text for an utterance starting at ``start_sample`` ("" for none)."""
        if not self._text or start_sample - self._end > self._reset:
            return ""
        return self._text


def segmenter_policy(settings: Settings, sample_rate: int) -> SegmenterPolicy:
    return SegmenterPolicy(
        sample_rate=sample_rate,
        threshold=settings.vad_threshold,
        hysteresis=settings.vad_hysteresis,
        min_silence_ms=settings.vad_min_silence_ms,
        min_speech_ms=settings.vad_min_speech_ms,
        pad_ms=settings.vad_pad_ms,
        trailing_pad_ms=settings.vad_trailing_pad_ms,
        max_utterance_ms=settings.max_utterance_ms,
        long_cut_pause_ms=settings.vad_long_cut_pause_ms,
        eager_silence_ms=settings.vad_eager_silence_ms,
    )


def whisper_engine(settings: Settings) -> SttEngine:
    """Greedy decoding (beam 1, the default) batches open utterances across streams; a wider beam decodes
    one utterance at a time with faster-whisper."""
    common = {"compute_type": settings.whisper_compute_type, "device": settings.whisper_device,
              "threads": settings.whisper_threads, "lanes": settings.stt_decode_lanes}  # fmt: skip
    if settings.whisper_device == "cuda":
        from stt_workers.whisper_device import load_cublas, set_gpu_wait

        load_cublas()  # CTranslate2 loads cuBLAS by name on first use: from the gpu extra's wheel if need be
        if not set_gpu_wait(settings.whisper_gpu_wait):
            log.warning("could not set PALAVER_WHISPER_GPU_WAIT=%s: CUDA's default applies", settings.whisper_gpu_wait)
    if settings.whisper_beam_size == 1:
        from stt_workers.batched_whisper import BatchedWhisper

        return BatchedWhisper(settings.model_dir, decode_mode=settings.whisper_decode, **common)  # type: ignore[arg-type]
    from stt_workers.whisper_engine import WhisperEngine

    return WhisperEngine(settings.model_dir, beam_size=settings.whisper_beam_size, **common)  # type: ignore[arg-type]


def local_transcriber(settings: Settings, run: str | None = None, live: bool = True) -> LocalTranscriber:
    """The local path as the settings configure it: Silero VAD and the Whisper engine (``LocalTranscriber``
    says what ``run`` and ``live`` change)."""
    from stt_workers.vad import SileroScorer

    return LocalTranscriber(settings, whisper_engine(settings), SileroScorer(), run=run, live=live)


class LocalTranscriber:
    def __init__(self, settings: Settings, engine: SttEngine, scorer: Scorer, run: str | None = None,
                 live: bool = True):  # fmt: skip
        """``run``: the run its events belong to (default ``engine:model``, the live run). ``live`` False (a
        replay, ``stt_workers.replay``): no partials, eager finals or progress events, only what the audio
        alone decides (finals, and the lifecycle events the worker forwards), so a second pass over the same
        audio makes the same events."""
        self._settings = settings
        self._engine = engine
        self._scorer = scorer
        self.name, self.model = engine.name, engine.model
        self.run = run or f"{self.name}:{self.model}"
        self._live = live
        self._queue = OutputQueue()  # output waiting for the worker's next round
        self._streams: dict[str, StreamState] = {}
        lanes = settings.stt_decode_lanes
        self._executor = ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="decode")
        decode_batch = getattr(engine, "decode", None) or (
            lambda batch, language, with_words, prompts, vocabulary: [engine.transcribe(a, language) for a in batch]
        )
        self._scheduler = DecodeScheduler(decode_batch, self._executor, engine.name, max_batch=settings.stt_max_batch,
                                          partial_deadline_s=settings.stt_partial_deadline_ms / 1000,
                                          lanes=lanes, final_lanes=settings.stt_final_lanes,
                                          partial_batch_audio_s=settings.stt_partial_batch_audio_s)  # fmt: skip
        self._multilingual = bool(getattr(engine, "multilingual", True))
        self._eager: dict[str, EagerFinal] = {}  # stream -> its eager final decode, while it may be one
        # stream -> its recent final text, each decode's prompt; only live: which finals are published
        # when a later decode is asked for depends on timing, and a replay must make the same events
        self._prompting = settings.stt_prompt and live
        self._history: dict[str, PromptHistory] = {}
        # meeting -> its vocabulary as the decoder's prompt (``set_vocabulary``); live and in replays alike:
        # it depends on the meeting only, not on timing
        self._vocabularies: dict[str, str] = {}
        self._count_tokens = getattr(engine, "count_tokens", None)  # None: an engine that takes no prompt

    def set_vocabulary(self, meeting_id: str, terms: list[str]) -> None:
        """The meeting's vocabulary terms, most important first (``stt_workers.vocabulary.vocabulary_terms``;
        cleaned and deduplicated again here): every decode of its streams asked for from now on puts them
        first in its prompt, cut to the token budget. No terms forget the meeting's vocabulary; an engine
        that takes no prompt (no ``count_tokens``) ignores it."""
        terms = vocabulary_terms(glossary=terms)
        prompt = vocabulary_prompt(terms, self._count_tokens) if terms and self._count_tokens else ""
        if prompt:
            self._vocabularies[meeting_id] = prompt
        else:
            self._vocabularies.pop(meeting_id, None)
        log.debug("vocabulary of %s: %d of %d terms in the prompt", meeting_id,
                  len(prompt.split(", ")) if prompt else 0, len(terms))  # fmt: skip

    def vocabulary(self, meeting_id: str) -> str:
        """The meeting's vocabulary prompt ("" for none)."""
        return self._vocabularies.get(meeting_id, "")

    def holds(self, stream_id: str) -> bool:
        return stream_id in self._streams

    async def open(self, info: StreamInfo, partition: int, first_sample: int) -> None:
        if info.stream_id not in self._streams:
            info = self._decodable(info)
            self._streams[info.stream_id] = StreamState(info, self._new_segmenter(info, first_sample), partition)
            self._history[info.stream_id] = PromptHistory(info.sample_rate)
            STT_ACTIVE_STREAMS.set(len(self._streams))

    def _decodable(self, info: StreamInfo) -> StreamInfo:
        """``info`` with the language this model decodes it in: an English-only model decodes English."""
        if self._multilingual or info.language == ENGLISH:
            return info
        log.warning("stream %s asks for language %r, but model %s is English-only: decoding it as English",
                    info.stream_id, info.language, self.model)  # fmt: skip
        return dataclasses.replace(info, language=ENGLISH)

    def _new_segmenter(self, info: StreamInfo, first_sample: int) -> Segmenter:
        return Segmenter(self._scorer, segmenter_policy(self._settings, info.sample_rate), first_sample)

    async def audio(self, frame: AudioFrameV1, record: ConsumerRecord) -> None:
        state = self._streams[frame.stream_id]
        state.last_frame = (record.timestamp, frame.end_sample)
        segments = state.accept(frame, record.offset, lambda first: self._new_segmenter(state.info, first))
        for segment in segments:
            self._finalize(state, segment)
        if segments:
            self._preempt()

    async def stop(self, stream_id: str, offset: int, last: KeyedEvent) -> None:
        state = self._streams.pop(stream_id, None)
        STT_ACTIVE_STREAMS.set(len(self._streams))
        if state is not None:
            segments = state.segmenter.flush()
            for segment in segments:
                self._finalize(state, segment)
            if segments:
                self._preempt()
        self._eager.pop(stream_id, None)
        self._history.pop(stream_id, None)
        self._queue.emit(stream_id, last)

    def forward(self, stream_id: str, event: KeyedEvent) -> None:
        self._queue.emit(stream_id, event)

    def after_batch(self, touched: set[str]) -> None:
        # Partials and progress once per stream per batch, for the newest audio only: when the
        # worker falls behind, batches grow and stale partial decodes are skipped, not queued. Which
        # batches a pass sees depends on timing, so a replay makes neither (``live``).
        if not self._live:
            return
        for stream in sorted(touched):
            state = self._streams.get(stream)
            if state is not None:
                self._partial(state)
                self._progress(state)

    def resume_points(self) -> Iterator[ResumePoint]:
        for stream, state in self._streams.items():
            yield ResumePoint(stream, state.partition, state.segmenter.keep_from, state.committable_offset())

    async def release(self, partitions: set[int] | None) -> None:
        """Nothing runs on its own here: what is queued is the worker's to publish."""

    def forget(self, partitions: set[int]) -> None:
        for stream, state in list(self._streams.items()):
            if state.partition in partitions:
                del self._streams[stream]
                self._eager.pop(stream, None)
                self._history.pop(stream, None)
        STT_ACTIVE_STREAMS.set(len(self._streams))

    def pending(self) -> Pending:
        return self._queue.pending()

    def take(self) -> list[Queued]:
        self._scheduler.final_waiting = False  # the finals go to the round the worker begins now
        return self._queue.take()

    def decode(self, decodes: list[Decode]) -> Decoding:
        return self._scheduler.start([d.request for d in decodes])

    def event(self, decode: Decode, result: Transcription | None) -> KeyedEvent | None:
        job = decode.job
        if isinstance(job, _Final):
            assert result is not None, "finals are never dropped"
            return self._final_value(job.info, job.segment, result, job.speech_ended_ms)
        assert isinstance(job, _Partial), f"not a decode of this transcriber: {job!r}"
        return self._partial_value(job, result)

    def idle_lane(self) -> bool:
        return self._scheduler.idle_lane

    def check(self) -> None:
        pass

    def speaking(self) -> int:
        return sum(1 for state in self._streams.values() if state.segmenter.in_speech)

    async def close(self) -> None:
        self._executor.shutdown(wait=False)

    def _partial(self, state: StreamState) -> None:
        """Ask for a re-decode of the open utterance once enough new audio arrived, or as soon as a
        silence may be ending it (an eager final)."""
        segment = state.segmenter.open_segment()
        if segment is None:
            return
        open_utt = state.open_utterance
        if open_utt is None or open_utt.start_sample != segment.start_sample:
            open_utt = state.open_utterance = OpenUtterance(segment.start_sample, decoded_until=segment.start_sample)
        ending = state.segmenter.ending_segment()
        eager = self._eager.get(state.info.stream_id)
        if ending is not None and (eager is None or not eager.same(ending)):
            self._ask(state, open_utt, ending, EagerFinal(ending))
            return
        interval = state.info.sample_rate * PARTIAL_INTERVAL_MS // 1000
        if segment.end_sample - open_utt.decoded_until >= interval:
            self._ask(state, open_utt, segment, None)

    def _ask(self, state: StreamState, open_utt: OpenUtterance, segment: Segment, eager: EagerFinal | None) -> None:
        """Queue a decode of ``segment`` of the open utterance, published as a partial; an eager final's
        (a final-kind request: first in its round, with word timings) becomes the final if the utterance
        ends where it does before it is published."""
        asked_before, open_utt.decoded_until = open_utt.decoded_until, segment.end_sample
        info = state.info
        kind = "partial" if eager is None else "final"
        request = DecodeRequest(kind, segment.audio, info.sample_rate, info.language, self._prompt(info, segment),
                                self.vocabulary(info.meeting_id))  # fmt: skip
        decode = Decode(request, _Partial(state, open_utt, segment, asked_before, eager))
        if eager is not None:
            eager.decode = decode
            self._eager[info.stream_id] = eager
        self._queue.decode(info.stream_id, decode, partial=True)

    def _partial_value(self, job: _Partial, result: Transcription | None) -> KeyedEvent | None:
        """The partial event of a decoded open utterance (None: dropped as stale, silence, or the utterance
        ended meanwhile), or the final when an eager decode turned out to be the final's. Folds the words
        into the utterance's hypotheses (LocalAgreement): called in the stream's order."""
        state, open_utt, segment, eager = job.state, job.open_utterance, job.segment, job.eager
        info = state.info
        if eager is not None:
            if eager.final_at_ms is not None:
                assert result is not None, "final-kind requests are never dropped"
                return self._final_value(info, segment, result, eager.final_at_ms)
            eager.result = result
        if result is None and open_utt.decoded_until == segment.end_sample:
            # Dropped by a late round, and no newer request since: ask again with the next audio
            # instead of waiting for another interval of it.
            open_utt.decoded_until = job.asked_before
        words = tuple(result.text.split()) if result is not None else ()
        if not words or state.open_utterance is not open_utt:
            return None
        stable, unstable = open_utt.update(words)
        event = partial_event(info, segment, open_utt, stable, unstable, language=info.language,
                              engine=self.name, model=self.model, run=self.run)  # fmt: skip
        STT_PARTIAL_LATENCY.observe(max(0.0, time.time() - state.audio_time_ms(segment.end_sample) / 1000))
        return KeyedEvent(info.meeting_id, encode(event))

    def _progress(self, state: StreamState) -> None:
        """In silence, tell the merger how far this stream is settled, so silent streams do not hold
        the meeting's watermark back."""
        if state.segmenter.in_speech:
            return
        event = progress_event(state.info, state.segmenter.settled_sample, self.run)
        if event.settled_ms - state.progress_ms >= PROGRESS_INTERVAL_MS:
            state.progress_ms = event.settled_ms
            self._queue.emit(state.info.stream_id, KeyedEvent(state.info.meeting_id, encode(event)))

    def _finalize(self, state: StreamState, segment: Segment) -> None:
        info = state.info
        speech_ended_ms = state.audio_time_ms(segment.end_sample)
        eager = self._eager.pop(info.stream_id, None)
        ended_open = state.open_utterance is not None and state.open_utterance.start_sample == segment.start_sample
        if ended_open:
            state.open_utterance = None
        if eager is not None and eager.same(segment) and not eager.decode.superseded:
            # The utterance ended where the eager decode did: it is the final's decode.
            if eager.result is not None:  # decoded and published as a partial already
                value = self._final_value(info, segment, eager.result, speech_ended_ms)
                if value is not None:
                    self._queue.emit(info.stream_id, value, final=True)
            else:  # queued or decoding: its event is the final (``_partial_value``)
                eager.final_at_ms = speech_ended_ms
                self._queue.keep(info.stream_id, eager.decode)
            return
        if ended_open:
            self._queue.drop_partial(info.stream_id)
        request = DecodeRequest("final", segment.audio, info.sample_rate, info.language, self._prompt(info, segment),
                                self.vocabulary(info.meeting_id))  # fmt: skip
        self._queue.decode(info.stream_id, Decode(request, _Final(info, segment, speech_ended_ms)))

    def _prompt(self, info: StreamInfo, segment: Segment) -> str:
        """The decoder's previous text for ``segment``: the stream's finals published so far (none while
        prompts are off, and after a long silence, ``PromptHistory``)."""
        history = self._history.get(info.stream_id)
        return history.prompt(segment.start_sample) if self._prompting and history is not None else ""

    def _preempt(self) -> None:
        """A final waits for the next round (``Pending.final``): the running rounds start no more partials
        until the worker takes it (``take``), so its round need not wait for them."""
        self._scheduler.final_waiting = self._queue.pending().final

    def _final_value(self, info: StreamInfo, segment: Segment, result: Transcription,
                     speech_ended_ms: int) -> KeyedEvent | None:  # fmt: skip
        """The final event of a decoded utterance, encoded with its key (None: nothing was said)."""
        event = final_event(info, segment, result, language=info.language, engine=self.name, model=self.model,
                            run=self.run)  # fmt: skip
        if event is None:
            return None
        if (history := self._history.get(info.stream_id)) is not None:
            history.add(segment.start_sample, segment.end_sample, event.text)
        STT_UTTERANCES.labels(engine=self.name).inc()
        STT_FINAL_LATENCY.observe(max(0.0, time.time() - speech_ended_ms / 1000))
        log.info("%s %d-%d ms: %s", info.stream_id, event.start_ms, event.end_ms, event.text)
        return KeyedEvent(info.meeting_id, encode(event))


@dataclass
class EagerFinal:
    """A decode of the segment that ends the open utterance if its silence goes on
    (``Segmenter.ending_segment``), asked for after ``eager_silence_ms`` of that silence instead of
    ``min_silence_ms``: the decode runs while the end of speech is made sure. Until then it is the
    stream's partial; if the utterance ends there, the final needs no decode of its own."""

    segment: Segment
    decode: Decode | None = None  # its request, queued or taken
    result: Transcription | None = None  # once published as a partial
    final_at_ms: int | None = None  # set when the utterance ended here before it was published

    def same(self, segment: Segment) -> bool:
        return (self.segment.start_sample, self.segment.end_sample) == (segment.start_sample, segment.end_sample)


@dataclass(frozen=True, eq=False)
class _Final:
    """What a final's event needs besides its decode (``LocalTranscriber.event``)."""

    info: StreamInfo
    segment: Segment
    speech_ended_ms: int  # when the utterance's speech ended, against the audio's arrival (its latency)


@dataclass(frozen=True, eq=False)
class _Partial:
    """What a partial's event needs besides its decode: the stream and its open utterance when it was
    asked for (``LocalTranscriber._partial_value``)."""

    state: StreamState
    open_utterance: OpenUtterance
    segment: Segment
    asked_before: int  # the utterance's ``decoded_until`` before this request (restored if it is dropped)
    eager: EagerFinal | None  # an eager final's decode

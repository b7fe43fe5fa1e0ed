"""``palaver replay``: transcribe a stored meeting's audio again, into a run of its own.

The log is the system of record: the audio topic holds every meeting's audio for its retention (7 days,
``AUDIO_FRAMES.retention_ms``). A replay reads one meeting's records from it (``replay_scan``: its streams'
frames, ``stream.started`` and ``stream.stopped``) and transcribes them with the STT worker's own step and
transcriber (``pipeline.SttWorker``, ``local_transcriber``), as fast as the machine allows, into the run the
overrides name (``palaver.runs.replay_run``). Its events go to the transcripts topic like the workers':
the running merger builds that run's dialogues and the store writer stores them beside the live run's.

Replaying the same thing twice changes nothing: utterance ids hash the stream and the sample, event ids
the utterance and the run, and a replay makes only what the audio alone decides (finals and the forwarded
lifecycle events; no partials, no progress events: ``LocalTranscriber(live=False)``), each utterance decoded
alone (``REPLAY_MAX_BATCH``). A second replay publishes the same events again, which the merger takes for
redeliveries and the store upserts onto the same rows. Every replay decodes with the meeting's newest
vocabulary (names, title, agenda, glossary: ``vocabulary_follower.meeting_vocabulary``), so one made after
the glossary changed may word a final otherwise, under the same ids.

Live meetings are left alone: the replay decodes in its own process, reads the audio topic without a
consumer group (``ConsumerRunner.run`` over offset ranges: nothing committed, the workers' group never
sees it), and writes only its own run, which the live socket and the read routes' default leave out. Its
CPU: ``--lanes``, ``--threads``, and its nice value (``--nice``). A live meeting is replayed up to now: its
open utterances wait for a later replay (which repeats the rest and adds them).

It refuses, saying why, a meeting that was erased (its ``deleted`` marker on the meetings topic: what
``palaver.store.erasure.is_purged`` reads from the store) and one whose audio has expired, wholly or in
part (``replay_scan``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from palaver.erasure import meeting_entities
from palaver.events import MeetingChangedV1, decode_on
from palaver.events.audio_frame_v1 import AUDIO_EVENT, BYTES_PER_SAMPLE, event_type
from palaver.events.registry import AUDIO_FRAMES, MEETINGS
from palaver.settings import Settings
from palaver.streams.clients import headers_dict, make_producer
from palaver.streams.runner import Checkpoint, Committed, ConsumerRunner, Offsets, RunnerConfig, Step
from stt_workers.pipeline import SttWorker
from stt_workers.replay_scan import MeetingAudio, Progress, scan

# A small read-ahead: the reading stays a few rounds ahead of the decoding (its progress is the replay's),
# and holds little audio in memory.
RUNNER = RunnerConfig(service="replay", topics=(AUDIO_FRAMES,), group=None, batch_max=100, poll_ms=100,
                      max_pending_checkpoints=4)  # fmt: skip
DAY_MS = 24 * 3600 * 1000


class ReplayRefused(Exception):
    """The meeting cannot be replayed (erased, no audio, audio expired); the message says why."""


class NothingToReplay(ReplayRefused):
    """The meeting was erased, or the topic holds no audio of it: a backfill skips it rather than fails."""


@dataclass(frozen=True)
class ReplayOutcome:
    meeting_id: str
    run: str
    streams: int
    audio_s: float
    elapsed_s: float
    live: bool  # some stream had not stopped: replayed up to now
    interrupted: bool  # stopped before the end (what was published stays; a replay again completes it)


async def meeting_state(settings: Settings, meeting_id: str) -> MeetingChangedV1 | None:
    """The meeting's newest state on the meetings topic (None: the topic never held it)."""
    raw = (await meeting_entities(settings, meeting_id)).get(meeting_id)
    if raw is None:
        return None
    event = decode_on(MEETINGS, raw)
    return event if isinstance(event, MeetingChangedV1) else None


async def find_audio(settings: Settings, meeting_id: str, now_ms: int,
                     progress: Progress | None = None) -> MeetingAudio:  # fmt: skip
    """The meeting's audio, all of it. Raises ReplayRefused for an erased meeting, one without audio on the
    topic, and one whose audio has expired in part."""
    state = await meeting_state(settings, meeting_id)
    if state is not None and state.deleted:
        raise NothingToReplay(f"meeting {meeting_id} was erased: it is never replayed")
    audio = await scan(settings, meeting_id, state.created_at_ms if state else None, now_ms, progress)
    keeps = f"the audio topic keeps audio {AUDIO_FRAMES.retention_ms // DAY_MS} days"
    if not audio.streams:
        known = "" if state is not None else " (and no such meeting on the meetings topic)"
        raise NothingToReplay(f"no audio of meeting {meeting_id} on the audio topic{known}: {keeps}, so it has "
                            "expired, or the meeting never had any")  # fmt: skip
    if audio.expired_partitions:
        raise ReplayRefused(f"the audio of meeting {meeting_id} has expired in part ({keeps}: partitions "
                            f"{audio.expired_partitions} hold nothing older than the meeting's start)")  # fmt: skip
    lost = audio.lost_beginnings()
    if lost:
        streams = ", ".join(f"{stream} before sample {sample}" for stream, sample in lost.items())
        raise ReplayRefused(f"the audio of meeting {meeting_id} has expired in part ({keeps}): {streams}")
    return audio


class OneMeeting(Step):
    """The STT worker's step over the records of one meeting (the others of the ranges read are passed
    over); ``on_audio`` hears the seconds of audio each frame brings."""

    def __init__(self, worker: SttWorker, meeting_id: str, on_audio: Callable[[float], None]):
        self._worker = worker
        self._prefix = f"{meeting_id}/".encode()
        self._on_audio = on_audio

    async def process(self, record: ConsumerRecord) -> None:
        if record.key is None or not record.key.startswith(self._prefix):
            return
        await self._worker.process(record)
        headers = headers_dict(record.headers)
        if event_type(headers) == AUDIO_EVENT:
            rate = int(headers.get("sample_rate", b"16000"))
            self._on_audio(len(record.value or b"") / BYTES_PER_SAMPLE / rate)

    async def after_batch(self) -> None:
        await self._worker.after_batch()

    async def snapshot(self, offsets: Offsets, final: bool) -> Checkpoint | None:
        return await self._worker.snapshot(offsets, final)

    def poll_ms(self, idle_ms: int) -> int:
        return self._worker.poll_ms(idle_ms)

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        await self._worker.assigned(committed)

    async def closing(self, partitions: set[TopicPartition] | None) -> None:
        await self._worker.closing(partitions)

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        await self._worker.revoked(partitions)


async def transcribe(settings: Settings, audio: MeetingAudio, run: str, stop: asyncio.Event,
                     progress: Callable[[float, float], None] | None = None) -> ReplayOutcome:  # fmt: skip
    """Transcribe ``audio`` into ``run`` with the local path (``settings`` as the replay takes them:
    ``replay_settings.replay_setup``). ``progress``: (seconds of audio read, elapsed seconds)."""
    from stt_workers.local_transcriber import local_transcriber
    from stt_workers.vocabulary_follower import meeting_vocabulary

    transcriber = local_transcriber(settings, run=run, live=False)
    # the meeting's newest vocabulary for the whole replay, as the live run's decodes had it once it was set
    transcriber.set_vocabulary(audio.meeting_id, await meeting_vocabulary(settings, audio.meeting_id))
    producer = make_producer(settings)
    await producer.start()
    started = time.monotonic()
    read = 0.0

    def on_audio(seconds: float) -> None:
        nonlocal read
        read += seconds
        if progress is not None:
            progress(read, time.monotonic() - started)

    try:
        step = OneMeeting(SttWorker(settings, transcriber, producer), audio.meeting_id, on_audio)
        await ConsumerRunner(settings, RUNNER, step).run(stop, audio.ranges)
    finally:
        await transcriber.close()
        await producer.stop()
    return ReplayOutcome(audio.meeting_id, run, len(audio.streams), audio.seconds, time.monotonic() - started,
                         audio.live, stop.is_set())  # fmt: skip

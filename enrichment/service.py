"""The enrichment service: a step of the consumer runner (``palaver.streams.runner``) that decides when to
enrich each meeting (``enrichment.progress``, pure) and runs the enrichments as jobs beside it.

Input: the ``dialogues`` topic (a meeting's activity and its placed dialogues, from the merger's
watermarks) and ``enrichment.requests`` (the API's "the meeting ended" and "enrich it now"), co-partitioned
(same key and partition count, the range assignor gives one member the same partitions of both), so one
instance owns everything about a meeting. Its per-meeting progress lives in a changelog table
(``enrichment.state``), restored when a partition is assigned, as the merger's state is.

A job reads the meeting's text from the store (placed dialogues with human edits, names, title, agenda,
date; ``enrichment.store_reads``), runs the backend in a thread (the local backend is CPU work; remote ones
wait on the network), sends each piece of the detailed summary as a ``summary.chunk`` while the backend
writes it, then the whole result as one ``meeting.insights``, waits until the broker has them, and only then
tells the step it is done. A request leaves the state only after its result is delivered and the state is
written: a crash in between runs the job again, with the same ids (no loss, no duplicate the store's upserts
and the page's replace-by-id do not absorb).

A remote backend comes wrapped in its fallback (``enrichment.fallback``): when it fails, ``local`` stands in
and the result says so (``fallback``); an empty summary piece from it voids the chunks sent so far (the next
chunk carries ``reset``). A backend that still raises (its fallback off, or a bug) gets the same treatment
here, counted in ``palaver_enrichment_jobs_total{outcome="fallback"}``.

Why not a faust agent with a faust table and timer: see docs/architecture.md (Enrichment). In short, the
runner already gives every consumer the commit, DLQ, rebalance and changelog rules, and a second framework
with its own would be two houses.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import ConsumerRecord

from enrichment.backend import SUMMARY_RESTART, EnrichmentBackend, backend_named
from enrichment.correction import Correction, Corrector, LocalCorrector, corrector_named
from enrichment.insights import chunk_event, enrichment_run, insights_event, result_revision
from enrichment.model import Dialogue, Enrichment, MeetingTranscript
from enrichment.progress import (
    Job,
    Policy,
    Progress,
    due,
    expired,
    finished,
    needs_run,
    new_progress,
    note_dialogues,
    note_request,
    note_run,
    started,
)
from enrichment.store_reads import MeetingText, correctable, first_live_run, meeting_text
from palaver import ids
from palaver.events import decode_on, encode
from palaver.events.edits_v1 import DialogueEditedV1
from palaver.events.insights_v1 import EnrichmentRequestedV1
from palaver.events.registry import (
    DIALOGUES,
    EDITS,
    ENRICHMENT_REQUESTS,
    ENRICHMENT_STATE,
    INSIGHTS,
    meeting_partition,
    topic_name,
)
from palaver.metrics import ENRICHMENT_AUTOCORRECTIONS, ENRICHMENT_JOBS, ENRICHMENT_SECONDS
from palaver.settings import Settings
from palaver.store import Store
from palaver.store.edit_overlay import machine_editor
from palaver.store.erasure import is_purged
from palaver.streams.changelog import ChangelogTable
from palaver.streams.clients import make_consumer, make_producer
from palaver.streams.runner import Checkpoint, Committed, ConsumerRunner, Offsets, RunnerConfig, Step

log = logging.getLogger(__name__)

GROUP = "enrichment"
TICK_S = 1.0  # how often due jobs are looked for (idle meetings, ended ones whose streams stopped)
MAX_JOBS = 2  # enrichments at once per process: the local backend is CPU work beside the pipeline
READY = "enrichment ready"
AUTOCORRECT = machine_editor("autocorrect")  # the editor of auto-correct's edits

BackendFactory = Callable[[str], EnrichmentBackend]
CorrectorFactory = Callable[[str], Corrector]


class EnrichStep(Step):
    def __init__(self, settings: Settings, store: Store, producer: AIOKafkaProducer,
                 backends: BackendFactory | None = None,
                 consumer_factory: Callable[..., AIOKafkaConsumer] = make_consumer,
                 correctors: CorrectorFactory | None = None):  # fmt: skip
        """``backends`` makes a backend by name (default: ``backend_named`` with these settings),
        ``correctors`` an auto-correct backend (default: ``corrector_named`` with these settings)."""
        self._store = store
        self._producer = producer
        self._backends = backends or (lambda name: backend_named(name, settings))
        self._correctors = correctors or (lambda name: corrector_named(name, settings))
        ns = settings.topic_namespace
        self._dialogues = topic_name(ns, DIALOGUES.name)
        self._insights = topic_name(ns, INSIGHTS.name)
        self._edits = topic_name(ns, EDITS.name)
        self._table = ChangelogTable(settings, ENRICHMENT_STATE, consumer_factory)
        self._policy = Policy(every=settings.enrichment_every_dialogues, idle_ms=int(settings.meeting_idle_s * 1000),
                              settle_ms=int(settings.enrichment_settle_s * 1000),
                              default_backend=settings.enrichment_backend)  # fmt: skip
        self._retention_ms = int(settings.enrichment_state_retention_s * 1000)
        self._runs_looked_up: set[str] = set()  # meetings whose waiting request had the store asked for the run
        self._slots = asyncio.Semaphore(MAX_JOBS)
        self._running: dict[tuple[str, str], asyncio.Task[None]] = {}  # (meeting, job key) -> its task
        self._done: list[tuple[int, Job, int]] = []  # (partition, job, placed it covered), applied after a batch
        self._next_tick = 0.0
        self._ready = False

    # --- the runner's calls -------------------------------------------------------------------------

    def process(self, record: ConsumerRecord) -> None:
        if record.topic == self._dialogues:
            event = decode_on(DIALOGUES, record.value)
            meeting_id = event.meeting_id  # type: ignore[attr-defined]
            before = self._table.get(record.partition, meeting_id) or new_progress()
            after = note_dialogues(before, event, record.timestamp)  # type: ignore[arg-type]
        else:
            event = decode_on(ENRICHMENT_REQUESTS, record.value)
            assert isinstance(event, EnrichmentRequestedV1)
            meeting_id = event.meeting_id
            before = self._table.get(record.partition, meeting_id) or new_progress()
            after = note_request(before, event, record.timestamp)
            self._runs_looked_up.discard(meeting_id)  # a new request: the store may know the run by now
        if after is not before:
            self._table.put(record.partition, meeting_id, after)

    async def after_batch(self) -> None:
        for partition, job, covered in self._done:
            progress = self._table.get(partition, job.meeting_id)
            if progress is not None:  # None: the partition was revoked meanwhile; its new owner runs it again
                self._table.put(partition, job.meeting_id, finished(progress, job, covered))
        self._done.clear()
        now = time.monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + TICK_S
        now_ms = int(time.time() * 1000)
        forgotten = 0
        for partition, meeting_id, progress in self._table.items():
            running = {key for (m, key) in self._running if m == meeting_id}
            if not running and expired(progress, now_ms, self._retention_ms):
                self._table.delete(partition, meeting_id)  # a tombstone at the next checkpoint
                self._runs_looked_up.discard(meeting_id)
                forgotten += 1
                continue
            if needs_run(progress) and meeting_id not in self._runs_looked_up:
                progress = await self._look_up_run(partition, meeting_id, progress)
            for job in due(meeting_id, progress, now_ms, self._policy, running):
                self._table.put(partition, meeting_id, started(progress, job))
                task = asyncio.create_task(self._run(partition, job), name=f"enrich {meeting_id} {job.trigger}")
                self._running[(meeting_id, job.key)] = task
                task.add_done_callback(lambda _t, k=(meeting_id, job.key): self._running.pop(k, None))
        if forgotten:
            log.info("forgot the progress of %d meetings: nothing owed, idle past the retention", forgotten)

    async def _look_up_run(self, partition: int, meeting_id: str, progress: Progress) -> Progress:
        """Progress with the meeting's live run from the store, for a request that waits without one (its
        progress expired, or nobody has spoken yet: then it keeps waiting for the first dialogue). Asked once
        per waiting request; a store that fails is asked again at the next tick."""
        try:
            run = await first_live_run(self._store, meeting_id)
        except Exception:
            log.exception("the live run of %s could not be read; asked again", meeting_id)
            return progress
        if run is None:
            self._runs_looked_up.add(meeting_id)
            return progress
        after = note_run(progress, run)
        self._table.put(partition, meeting_id, after)
        return after

    async def snapshot(self, offsets: Offsets, final: bool) -> Checkpoint:
        states = self._table.take_dirty()

        async def persist() -> None:
            await self._table.write(self._producer, states)

        return Checkpoint(offsets, persist)

    async def assigned(self, committed: dict[TopicPartition, Committed]) -> None:
        await self._table.restore({tp.partition for tp in committed})
        if not self._ready:
            self._ready = True
            log.info(READY)

    async def closing(self, partitions: set[TopicPartition] | None) -> None:
        # A job of a partition that goes elsewhere stops here; the new owner starts it again from the state.
        for (meeting_id, _), task in list(self._running.items()):
            if partitions is None or _in_partitions(meeting_id, partitions):
                task.cancel()

    async def revoked(self, partitions: set[TopicPartition]) -> None:
        self._table.forget({tp.partition for tp in partitions})

    # --- a job ----------------------------------------------------------------------------------------

    async def _run(self, partition: int, job: Job) -> None:
        async with self._slots:
            begun = time.monotonic()
            try:
                covered = await self._enrich(job)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The store or the broker failed (a backend's failure has its fallback): the job stays due
                # (a final one in the state, a rolling one at the next refresh).
                log.exception("enrichment of %s (%s) failed; it is tried again", job.meeting_id, job.trigger)
                ENRICHMENT_JOBS.labels(trigger=job.trigger, outcome="failed").inc()
                await asyncio.sleep(5)
                return
            ENRICHMENT_SECONDS.labels(trigger=job.trigger).observe(time.monotonic() - begun)
            self._done.append((partition, job, covered))

    async def _enrich(self, job: Job) -> int:
        if await is_purged(self._store, job.meeting_id):
            log.info("%s was erased: not enriched", job.meeting_id)
            return job.placed
        text = await meeting_text(self._store, job.meeting_id, job.run)
        if job.trigger == "autocorrect":
            return await self._autocorrect(job, text)
        if job.final and text.placed < job.placed:
            # The store writer is a little behind the merger: wait a moment for the dialogues it has not written.
            for _ in range(20):
                await asyncio.sleep(0.5)
                text = await meeting_text(self._store, job.meeting_id, job.run)
                if text.placed >= job.placed:
                    break
        run = enrichment_run(job.run, job.backend)
        enrichment_id = ids.enrichment_id(job.meeting_id, run, result_revision(text.placed, job.final))
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        seq = 0
        reset = False

        def send_chunk(piece: str) -> None:  # called from the backend's thread, in order
            nonlocal seq, reset
            if piece == SUMMARY_RESTART:  # the backend failed mid-summary: the next chunk says to start over
                reset = seq > 0
                return
            event = chunk_event(job.meeting_id, run, enrichment_id, seq, piece, reset)
            seq, reset = seq + 1, False
            loop.call_soon_threadsafe(chunks.put_nowait, encode(event))

        sender = asyncio.create_task(self._send_all(job.meeting_id, chunks))
        fallback = None
        try:
            try:
                backend = self._backends(job.backend)
                result: Enrichment = await asyncio.to_thread(backend.enrich, text.transcript, send_chunk)
                outcome = "fallback" if result.fallback else "ok"
            except Exception as exc:  # the backend's failure: local stands in, and the result says so
                log.warning("enrichment backend %s failed on %s (%r); the local backend stands in", job.backend,
                            job.meeting_id, exc)  # fmt: skip
                fallback = {"backend": job.backend, "reason": f"{type(exc).__name__}: {exc}"[:500]}
                reset = seq > 0  # the chunks sent so far are void: the next one says so
                result = await asyncio.to_thread(self._backends("local").enrich, text.transcript, send_chunk)
                outcome = "fallback"
        finally:
            # The thread's last chunk was queued before its result came back (both through the loop).
            chunks.put_nowait(None)
        await sender
        event = insights_event(job.meeting_id, job.run, job.backend, job.trigger, text.placed, result, text.user_ids,
                               int(time.time() * 1000), fallback)  # fmt: skip
        await (await self._producer.send(self._insights, value=encode(event), key=job.meeting_id.encode()))
        ENRICHMENT_JOBS.labels(trigger=job.trigger, outcome=outcome).inc()
        log.info("enriched %s (%s, %d dialogues, %s)", job.meeting_id, job.trigger, text.placed, run)
        return text.placed

    async def _autocorrect(self, job: Job, text: MeetingText) -> int:
        """Correct the form of the dialogue (or of every dialogue) no human has edited, with the job's backend
        (enrichment/correction.py), as machine edits on the edits topic: the raw text stays, a human edit
        made later wins. The same correction made again is the same edit (its id derives from the corrected
        text). Where the backend cannot give a correction, the local one stands in, logged and counted."""
        rows = await correctable(self._store, job.meeting_id, job.run, job.dialogue_id)
        # The machine's text of each, with its speaker and times (a dialogue no human edited is in the
        # transcript, which shows it as edited by the machine, if it was).
        said = {d.dialogue_id: d for d in text.transcript.dialogues}
        unknown = Dialogue(dialogue_id="", speaker="", start_ms=0, end_ms=0, text="")
        dialogues = tuple(said.get(dialogue_id, unknown).model_copy(update={"dialogue_id": dialogue_id, "text": raw})
                          for dialogue_id, raw in rows)  # fmt: skip
        corrections = await self._corrections(job, text.transcript.model_copy(update={"dialogues": dialogues}))
        now = int(time.time() * 1000)
        sent = []
        for correction, (dialogue_id, raw) in zip(corrections, rows, strict=True):
            ENRICHMENT_AUTOCORRECTIONS.labels(job.backend, correction.outcome).inc()
            if correction.text == raw or not correction.text.strip():
                continue
            edit_id = ids.edit_id(job.meeting_id, f"dialogue/{dialogue_id}", f"{AUTOCORRECT}:{correction.text}")
            event = DialogueEditedV1(event_id=ids.event_id("dialogue.edited", edit_id), edit_id=edit_id,
                                     meeting_id=job.meeting_id, dialogue_id=dialogue_id, action="edit",
                                     text=correction.text, editor=AUTOCORRECT, edited_at_ms=now)  # fmt: skip
            sent.append(await self._producer.send(self._edits, value=encode(event), key=job.meeting_id.encode()))
        await asyncio.gather(*sent)
        stood_in = sum(c.outcome in ("rejected", "failed") for c in corrections)
        ENRICHMENT_JOBS.labels(trigger=job.trigger, outcome="fallback" if stood_in else "ok").inc()
        log.info("auto-corrected %d dialogues of %s with %s (%d corrected locally in its stead)", len(sent),
                 job.meeting_id, job.backend, stood_in)  # fmt: skip
        return job.placed

    async def _corrections(self, job: Job, transcript: MeetingTranscript) -> list[Correction]:
        """The job's backend's corrections; when it cannot be made or raises (a bug: a corrector falls back
        on its own), the local ones, each saying so."""
        if not transcript.dialogues:
            return []
        try:
            corrector = self._correctors(job.backend)
            return await asyncio.to_thread(corrector.correct, transcript)
        except Exception as exc:
            if job.backend == "local":
                raise
            note = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("auto-correct backend %s failed on %s (%s); the local one stands in", job.backend,
                        job.meeting_id, note)  # fmt: skip
            local = await asyncio.to_thread(LocalCorrector().correct, transcript)
            return [Correction(c.dialogue_id, c.text, "failed", note) for c in local]

    async def _send_all(self, meeting_id: str, values: asyncio.Queue[bytes | None]) -> None:
        """Send queued values in order until None, then wait until the broker has them all."""
        deliveries = []
        while (value := await values.get()) is not None:
            deliveries.append(await self._producer.send(self._insights, value=value, key=meeting_id.encode()))
        await asyncio.gather(*deliveries)


def _in_partitions(meeting_id: str, partitions: set[TopicPartition]) -> bool:
    """Whether the meeting's records lie in one of ``partitions`` (of dialogues or its co-partitioned input)."""
    return meeting_partition(meeting_id, DIALOGUES.partitions) in {tp.partition for tp in partitions}


def runner_config() -> RunnerConfig:
    return RunnerConfig(service=GROUP, topics=(DIALOGUES, ENRICHMENT_REQUESTS), group=GROUP, batch_max=500,
                        poll_ms=int(TICK_S * 500), checkpoint_interval_s=1.0,
                        consumer_config={"partition_assignment_strategy": (RangePartitionAssignor,)})  # fmt: skip


async def run_enrichment(settings: Settings, store: Store, stop: asyncio.Event) -> None:
    """Enrich meetings until ``stop`` is set."""
    producer = make_producer(settings)
    await producer.start()
    try:
        await ConsumerRunner(settings, runner_config(), EnrichStep(settings, store, producer), producer).run(stop)
    finally:
        await producer.stop()

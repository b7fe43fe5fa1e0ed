"""The store writer: consumes transcripts, dialogues, edits, users and chat, inserts them into ClickHouse
in batches, rebuilds merged transcripts that changed, then commits. A step of the consumer runner
(``palaver.streams.runner``).

A purged meeting stays purged: rows of old events of it (consumed late, or replayed) are dropped, all but
its content-free marker (``palaver.store.erasure``), and a batch that was inserted while a purge ran has
its rows of that meeting deleted after it.

Idempotent: rows are upserts keyed by deterministic ids, and each table's batch carries a dedup token. A
message that decodes but cannot be mapped to rows is dead-lettered by the runner (the batch goes on); a
ClickHouse that does not answer is retried with backoff for ``store_retry_budget_s`` (fetching pauses
meanwhile), with the same dedup tokens, on a fresh connection when the last one is gone; after that the
writer fails loudly and its process restarts it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from clickhouse_connect.driver.exceptions import OperationalError

from palaver.events import (
    ActionItemEditedV1,
    DialogueEditedV1,
    MeetingWatermarkV1,
    TranscriptEditedV1,
    decode_on,
)
from palaver.events.registry import (
    CHAT,
    DIALOGUES,
    EDITS,
    INSIGHTS,
    MEETINGS,
    SESSIONS,
    TRANSCRIPTS,
    USERS,
    TopicSpec,
    topic_name,
)
from palaver.metrics import STORE_BATCH_SECONDS, STORE_ROWS
from palaver.settings import Settings
from palaver.store.client import Store, StoreUnavailable
from palaver.store.erasure import MARKER_TABLE, delete_meeting_rows, purged_among
from palaver.store.rows import COLUMNS, Provenance, rows_for, write_order
from palaver.store.transcripts import rebuild_transcript, runs_of
from palaver.streams.clients import make_producer
from palaver.streams.runner import (
    ENVIRONMENT_ERRORS,
    Checkpoint,
    ConsumerRunner,
    Offsets,
    RunnerConfig,
    Step,
    retrying,
)

log = logging.getLogger(__name__)

GROUP = "store"
TOPICS = (TRANSCRIPTS, DIALOGUES, EDITS, USERS, CHAT, MEETINGS, SESSIONS, INSIGHTS)
# ClickHouse unreachable: retry, never dead-letter. The store raises StoreUnavailable (a ConnectionError, so
# one of ENVIRONMENT_ERRORS too) when a connection is gone and reconnects on the next call; OperationalError
# is a raw client's.
STORE_DOWN = (StoreUnavailable, OperationalError, *ENVIRONMENT_ERRORS)


def _meeting_of(table: str, row: tuple) -> str | None:
    columns = COLUMNS[table]
    return row[columns.index("meeting_id")] if "meeting_id" in columns else None


def _is_marker(table: str, row: tuple) -> bool:
    """Whether ``row`` is a purged meeting's content-free marker (the row a purge keeps)."""
    return table == MARKER_TABLE and bool(row[COLUMNS[table].index("deleted")])


def batch_token(records: list[ConsumerRecord], table: str) -> str:
    spans = sorted({(r.topic, r.partition) for r in records})
    parts = []
    for topic, partition in spans:
        offsets = [r.offset for r in records if (r.topic, r.partition) == (topic, partition)]
        parts.append(f"{topic}:{partition}:{min(offsets)}-{max(offsets)}")
    return f"{table}|" + ",".join(parts)


@dataclass
class Batch:
    """Rows mapped from the messages since the last checkpoint, and the transcripts they change."""

    rows: dict[str, list[tuple]] = field(default_factory=lambda: defaultdict(list))
    sources: dict[str, list[ConsumerRecord]] = field(default_factory=lambda: defaultdict(list))
    watermarks: dict[tuple[str, str], int] = field(default_factory=dict)  # (meeting, run) -> watermark
    edited_meetings: set[str] = field(default_factory=set)

    @property
    def empty(self) -> bool:
        """Nothing to write: no rows and no transcript to rebuild (a watermark alone in a batch still
        rebuilds its transcript)."""
        return not (self.rows or self.watermarks or self.edited_meetings)

    def meeting_ids(self) -> set[str]:
        """The meetings this batch writes rows of, or rebuilds a transcript of (purge markers aside)."""
        found = {m for m, _ in self.watermarks} | self.edited_meetings
        for table, table_rows in self.rows.items():
            found |= {m for row in table_rows if (m := _meeting_of(table, row)) and not _is_marker(table, row)}
        return found

    def markers(self) -> set[str]:
        """The meetings this batch holds a purge marker of."""
        return {row[0] for row in self.rows.get(MARKER_TABLE, ()) if _is_marker(MARKER_TABLE, row)}

    def without(self, purged: set[str]) -> Batch:
        """This batch less everything of the ``purged`` meetings but their markers."""
        kept = Batch(watermarks={k: v for k, v in self.watermarks.items() if k[0] not in purged},
                     edited_meetings=self.edited_meetings - purged)  # fmt: skip
        for table, table_rows in self.rows.items():
            for row, source in zip(table_rows, self.sources[table], strict=True):
                if _meeting_of(table, row) not in purged or _is_marker(table, row):
                    kept.rows[table].append(row)
                    kept.sources[table].append(source)
        return kept

    def add(self, record: ConsumerRecord, topic: TopicSpec) -> None:
        """Map one message of ``topic``; raises (changing nothing) when it cannot be
        decoded or mapped."""
        if record.value is None:
            return  # a tombstone on a compacted topic: its rows were erased with it (palaver admin purge-meeting)
        event = decode_on(topic, record.value)
        mapped = list(rows_for(event, Provenance(record.topic, record.partition, record.offset)))
        for table, row in mapped:
            self.rows[table].append(row)
            self.sources[table].append(record)
        if isinstance(event, MeetingWatermarkV1):
            key = (event.meeting_id, event.run)
            self.watermarks[key] = max(self.watermarks.get(key, -1), event.watermark_ms)
        elif isinstance(event, DialogueEditedV1 | TranscriptEditedV1 | ActionItemEditedV1):
            self.edited_meetings.add(event.meeting_id)


async def write_batch(store: Store, batch: Batch) -> int:
    """Insert one batch per table (a result's row after the rows it names), then rebuild the merged transcripts that new final dialogues or human
    edits changed; nothing of a purged meeting but its marker. Safe to repeat (dedup tokens, rebuilds from
    the stored rows). Returns rows written."""
    meetings = batch.meeting_ids()
    batch = batch.without(await purged_among(store, meetings) | batch.markers())
    for table in write_order(list(batch.rows)):
        table_rows = batch.rows[table]
        started = time.perf_counter()
        await store.ainsert(table, table_rows, COLUMNS[table], batch_token(batch.sources[table], table))
        STORE_BATCH_SECONDS.observe(time.perf_counter() - started)
        STORE_ROWS.labels(table=table).inc(len(table_rows))
    for (meeting_id, run), mark in sorted(batch.watermarks.items()):
        await rebuild_transcript(store, meeting_id, run, mark)
    for meeting_id in sorted(batch.edited_meetings):
        for run in await runs_of(store, meeting_id):
            if (meeting_id, run) not in batch.watermarks:
                await rebuild_transcript(store, meeting_id, run)
    # A purge that ran while these rows were on their way: it inserted its marker before deleting, and
    # these rows went in before this look, so either its delete took them or this one does.
    for meeting_id in sorted(await purged_among(store, batch.meeting_ids())):
        await delete_meeting_rows(store, meeting_id)
    return sum(len(r) for r in batch.rows.values())


class StoreStep(Step):
    def __init__(self, settings: Settings, store: Store, retry_first_delay_s: float = 0.5):
        """``retry_first_delay_s``: the first backoff of a failed insert (it doubles, within the settings'
        ``store_retry_budget_s``)."""
        self._topics = {topic_name(settings.topic_namespace, spec.name): spec for spec in TOPICS}
        self._store = store
        self._retry_budget_s = settings.store_retry_budget_s
        self._retry_first_delay_s = retry_first_delay_s
        self._batch = Batch()

    def process(self, record: ConsumerRecord) -> None:
        self._batch.add(record, self._topics[record.topic])

    async def snapshot(self, offsets: Offsets, final: bool) -> Checkpoint:
        batch, self._batch = self._batch, Batch()
        if batch.empty:
            return Checkpoint(offsets)

        async def persist() -> None:
            await retrying(lambda: write_batch(self._store, batch), "ClickHouse insert", self._retry_budget_s,
                           first_delay_s=self._retry_first_delay_s, retry_on=STORE_DOWN)  # fmt: skip

        return Checkpoint(offsets, persist)


def runner_config(settings: Settings) -> RunnerConfig:
    return RunnerConfig(service=GROUP, topics=TOPICS, group=GROUP, batch_max=settings.store_batch_max,
                        poll_ms=settings.store_batch_wait_ms)  # fmt: skip


async def run_store_writer(settings: Settings, store: Store, stop: asyncio.Event) -> None:
    """Consume until ``stop`` is set. Offsets are committed only after their rows are in ClickHouse."""
    producer: AIOKafkaProducer = make_producer(settings)
    await producer.start()
    try:
        step = StoreStep(settings, store)
        await ConsumerRunner(settings, runner_config(settings), step, producer).run(stop)
    finally:
        await producer.stop()

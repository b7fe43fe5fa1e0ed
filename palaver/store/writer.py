"""The store writer: consumes transcripts, dialogues, edits, users and chat, inserts them into ClickHouse
in batches, rebuilds merged transcripts that changed, then commits. Idempotent: rows are upserts keyed by
deterministic ids, and each batch carries a dedup token."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from palaver.events import (
    ActionItemEditedV1,
    DecodeError,
    DialogueEditedV1,
    MeetingWatermarkV1,
    TranscriptEditedV1,
    decode,
)
from palaver.events.registry import CHAT, DIALOGUES, EDITS, TRANSCRIPTS, USERS, topic_name
from palaver.metrics import STORE_BATCH_SECONDS, STORE_ROWS
from palaver.settings import Settings
from palaver.store.client import Store
from palaver.store.rows import COLUMNS, Provenance, rows_for
from palaver.store.transcripts import rebuild_transcript, runs_of
from palaver.streams.clients import make_consumer, make_producer
from palaver.streams.dlq import DlqPolicy, dlq_topics

log = logging.getLogger(__name__)

GROUP = "store"


def batch_token(records: list[ConsumerRecord], table: str) -> str:
    spans = sorted({(r.topic, r.partition) for r in records})
    parts = []
    for topic, partition in spans:
        offsets = [r.offset for r in records if (r.topic, r.partition) == (topic, partition)]
        parts.append(f"{topic}:{partition}:{min(offsets)}-{max(offsets)}")
    return f"{table}|" + ",".join(parts)


async def write_batch(store: Store, records: list[ConsumerRecord], dlq: DlqPolicy) -> int:
    """Decode, map to rows, insert one batch per table, then rebuild the merged transcripts that new final
    dialogues or human edits changed. Returns rows written. Bad messages go to the DLQ."""
    rows: dict[str, list[tuple]] = defaultdict(list)
    sources: dict[str, list[ConsumerRecord]] = defaultdict(list)
    watermarks: dict[tuple[str, str], int] = {}
    edited_meetings: set[str] = set()
    for record in records:
        try:
            event = decode(record.value)
        except DecodeError as exc:
            await dlq.dead_letter(record, str(exc))
            continue
        dlq.ok()
        for table, row in rows_for(event, Provenance(record.topic, record.partition, record.offset)):
            rows[table].append(row)
            sources[table].append(record)
        if isinstance(event, MeetingWatermarkV1):
            key = (event.meeting_id, event.run)
            watermarks[key] = max(watermarks.get(key, -1), event.watermark_ms)
        elif isinstance(event, DialogueEditedV1 | TranscriptEditedV1 | ActionItemEditedV1):
            edited_meetings.add(event.meeting_id)
    for table, table_rows in rows.items():
        started = time.perf_counter()
        await store.ainsert(table, table_rows, COLUMNS[table], batch_token(sources[table], table))
        STORE_BATCH_SECONDS.observe(time.perf_counter() - started)
        STORE_ROWS.labels(table=table).inc(len(table_rows))
    for (meeting_id, run), mark in sorted(watermarks.items()):
        await rebuild_transcript(store, meeting_id, run, mark)
    for meeting_id in sorted(edited_meetings):
        for run in await runs_of(store, meeting_id):
            if (meeting_id, run) not in watermarks:
                await rebuild_transcript(store, meeting_id, run)
    return sum(len(r) for r in rows.values())


async def run_store_writer(settings: Settings, store: Store, stop: asyncio.Event) -> None:
    """Consume until ``stop`` is set. Offsets are committed only after the batch is in ClickHouse."""
    specs = (TRANSCRIPTS, DIALOGUES, EDITS, USERS, CHAT)
    topics = [topic_name(settings.topic_namespace, t.name) for t in specs]
    consumer = make_consumer(settings, GROUP, *topics, max_poll_records=settings.store_batch_max)
    producer = make_producer(settings)
    await producer.start()
    await consumer.start()
    dlq = DlqPolicy(producer, dlq_topics(settings, *specs), GROUP)
    log.info("store writer consuming %s into %s", topics, store.database)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(
                timeout_ms=settings.store_batch_wait_ms, max_records=settings.store_batch_max
            )
            records = [r for part in batches.values() for r in part]
            if not records:
                continue
            await write_batch(store, records, dlq)
            await consumer.commit(committed_offsets(batches))
    finally:
        await consumer.stop()
        await producer.stop()


def committed_offsets(batches: dict[TopicPartition, list[ConsumerRecord]]) -> dict[TopicPartition, int]:
    return {tp: part[-1].offset + 1 for tp, part in batches.items() if part}

"""The merger as a faust-streaming app: a thin agent around ``merger.processor.apply``.

Per-meeting state lives in a faust table (changelog topic), so a restarted merger resumes where the
killed one left off. Events are taken in small batches; for each batch the dialogue events are sent and
*delivered* before the table is updated, and faust commits input offsets only after that. So the
changelog never records an event whose output could be lost, and a redelivered event (already in the
restored state) is recognised by ``apply`` and changes nothing: no loss, no duplicates.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust

from merger.processor import MeetingState, apply, new_state
from palaver.events import DecodeError, decode, encode
from palaver.events.registry import DIALOGUES, TRANSCRIPTS, topic_name
from palaver.metrics import MERGER_DIALOGUE_UPDATES
from palaver.settings import Settings
from palaver.streams.clients import make_producer

log = logging.getLogger(__name__)

GROUP = "merger"
BATCH_MAX = 500
BATCH_WITHIN_S = 0.01  # bounds the latency batching adds


def make_app(settings: Settings) -> faust.App:
    ns = settings.topic_namespace
    app = faust.App(
        settings.group_id(GROUP),
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",
        datadir=str(settings.data_dir / "merger"),
        topic_partitions=TRANSCRIPTS.partitions,
        topic_replication_factor=settings.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=False,
        table_cleanup_interval=3600.0,
    )
    transcripts = app.topic(topic_name(ns, TRANSCRIPTS.name), key_serializer="raw", value_serializer="raw")
    dialogues_topic = topic_name(ns, DIALOGUES.name)
    # Keys are the raw meeting id, hashed by the producer's partitioner exactly like the transcripts topic's
    # keys, so a meeting's changelog lands in the partition of its events (the table is written after a
    # batch, outside faust's per-event context, hence use_partitioner).
    meetings = app.Table("meetings", default=new_state, key_type=bytes, partitions=TRANSCRIPTS.partitions,
                         use_partitioner=True)  # fmt: skip

    @app.agent(transcripts)
    async def merge(stream: faust.StreamT) -> None:
        # Our own idempotent producer for dialogue events: faust's per-message bookkeeping costs more than
        # the merging. Each batch's outputs are delivered before the table is written and before the
        # batch's input offsets can be committed.
        producer = make_producer(settings, linger_ms=2)
        await producer.start()
        try:
            async for batch in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):  # type: ignore[attr-defined]
                states = await _merge_batch(batch, producer)
                for meeting_id, state in states.items():
                    meetings[meeting_id.encode()] = state
        finally:
            await producer.stop()

    async def _merge_batch(batch: list[Any], producer: Any) -> dict[str, MeetingState]:
        states: dict[str, MeetingState] = {}
        deliveries: list[Any] = []
        for record in batch:
            message = record.message
            try:
                event = decode(record.value)
            except DecodeError as exc:
                log.warning("skipping invalid transcript event at offset %s: %s", message.offset, exc)
                continue
            meeting_id = getattr(event, "meeting_id", None)
            if meeting_id is None:
                continue
            before = states[meeting_id] if meeting_id in states else meetings[meeting_id.encode()]
            state, updates = apply(meeting_id, before, event, settings.merger_pause_ms)
            states[meeting_id] = state
            # Provenance: which input produced each output, and when it was appended (for lag metrics).
            headers = [
                ("palaver.source", f"{message.topic}:{message.partition}:{message.offset}".encode()),
                ("palaver.source_ts_ms", str(int(message.timestamp * 1000)).encode()),
            ]
            for update in updates:
                # Same key, same partition count, same partitioner: the input's partition is the output's.
                deliveries.append(await producer.send(dialogues_topic, encode(update), key=meeting_id.encode(),
                                                      partition=message.partition, headers=headers))  # fmt: skip
            MERGER_DIALOGUE_UPDATES.inc(len(updates))
        if deliveries:
            await asyncio.gather(*deliveries)
        return states

    return app


def run_merger(settings: Settings, loglevel: str = "info") -> None:
    """Run the merger worker until SIGINT/SIGTERM (faust installs the signal handlers)."""
    app = make_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()

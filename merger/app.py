"""The merger as a faust-streaming app: a thin agent around ``merger.processor.apply``.

Per-meeting state lives in a faust table (changelog topic), so a restarted merger resumes where the
killed one left off. Each input event is acknowledged only after its dialogue events are delivered.
"""

from __future__ import annotations

import logging

import faust

from merger.processor import apply, new_state
from palaver.events import DecodeError, decode, encode
from palaver.events.registry import DIALOGUES, TRANSCRIPTS, topic_name
from palaver.metrics import MERGER_DIALOGUE_UPDATES
from palaver.settings import Settings

log = logging.getLogger(__name__)

GROUP = "merger"


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
    dialogues = app.topic(topic_name(ns, DIALOGUES.name), key_serializer="raw", value_serializer="raw")
    meetings = app.Table("meetings", default=new_state, partitions=TRANSCRIPTS.partitions)

    @app.agent(transcripts)
    async def merge(stream: faust.StreamT) -> None:
        async for record in stream.events():
            try:
                event = decode(record.value)
            except DecodeError as exc:
                log.warning("skipping invalid transcript event at offset %s: %s", record.message.offset, exc)
                continue
            meeting_id = getattr(event, "meeting_id", None)
            if meeting_id is None:
                continue
            before = meetings[meeting_id]
            state, updates = apply(meeting_id, before, event, settings.merger_pause_ms)
            deliveries = [await dialogues.send(key=meeting_id.encode(), value=encode(u)) for u in updates]
            for delivery in deliveries:
                await delivery
            if state is not before:
                meetings[meeting_id] = state
            MERGER_DIALOGUE_UPDATES.inc(len(updates))

    return app


def run_merger(settings: Settings, loglevel: str = "info") -> None:
    """Run the merger worker until SIGINT/SIGTERM (faust installs the signal handlers)."""
    app = make_app(settings)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()

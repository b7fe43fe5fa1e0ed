"""SIGKILL of the merger mid-meeting: after a restart, the stored dialogues equal an uninterrupted run
(the same input folded from zero through the same rules)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from bench.synthetic import synthetic_meeting
from merger.processor import apply, new_state
from palaver.events import DialogueUpdateV1, encode
from palaver.events.base import EventV
from palaver.events.registry import TRANSCRIPTS, topic_name
from palaver.streams.clients import make_producer
from tests.integration.conftest import Pipeline

pytestmark = pytest.mark.integration

def reference(meeting_id: str, events: list[EventV], pause_ms: int) -> set[tuple[Any, ...]]:
    state, latest = new_state(), {}
    for event in events:
        state, out = apply(meeting_id, state, event, pause_ms)
        for u in out:
            if isinstance(u, DialogueUpdateV1):
                latest[u.dialogue_id] = u
    return {(d.dialogue_id, d.speaker_id, d.start_ms, d.end_ms, d.text, d.status, d.position)
            for d in latest.values() if d.status != "retracted"}  # fmt: skip


async def stored(p: Pipeline, meeting_id: str) -> set[tuple[Any, ...]]:
    rows = await p.store.aquery(
        f"SELECT dialogue_id, speaker_id, start_ms, end_ms, dialogue_text, status, position "
        f"FROM {p.store.database}.dialogues FINAL WHERE meeting_id = {{m:String}} AND status != 'retracted'",
        {"m": meeting_id},
    )
    return {tuple(r.values()) for r in rows}


async def test_sigkill_mid_meeting_then_restart_equals_uninterrupted_run(pipeline: Pipeline) -> None:
    meeting_id = f"m-{uuid.uuid4().hex[:8]}"
    events = synthetic_meeting(meeting_id, speakers=3, utterances=25, seed=7)
    expected = reference(meeting_id, events, pipeline.settings.merger_pause_ms)
    assert len(expected) > 20 and all(d[5] == "final" for d in expected)

    producer = make_producer(pipeline.settings)
    await producer.start()
    topic = topic_name(pipeline.settings.topic_namespace, TRANSCRIPTS.name)
    killed_at = len(events) // 3
    try:
        for i, event in enumerate(events):
            await producer.send_and_wait(topic, encode(event), key=meeting_id.encode())
            if i == killed_at:
                await asyncio.sleep(1.0)  # let the merger get well into the meeting ...
                assert await stored(pipeline, meeting_id), "the merger was working before the kill"
                pipeline.merger.kill()  # ... then SIGKILL: no flush, no commit
            elif i == killed_at + 40:
                pipeline.merger.start()
                await asyncio.to_thread(pipeline.merger.wait_for_log, "merger ready", 120, 2)
            elif i % 10 == 0:
                await asyncio.sleep(0.02)
    finally:
        await producer.stop()

    # The writer inserts the dialogues, then rebuilds the transcript: wait for both, not the first alone.
    deadline = time.monotonic() + 120
    got: set[tuple[Any, ...]] = set()
    revision = None
    while time.monotonic() < deadline:
        got, revision = await stored(pipeline, meeting_id), await transcript_revision(pipeline, meeting_id)
        if got == expected and revision == len(expected):
            break
        await asyncio.sleep(1)
    assert got == expected, (len(got), len(expected), sorted(got ^ expected)[:6])
    assert revision == len(expected), ("the merged transcript holds every final dialogue", revision)


async def transcript_revision(p: Pipeline, meeting_id: str) -> int | None:
    rows = await p.store.aquery(
        f"SELECT revision FROM {p.store.database}.transcripts FINAL WHERE meeting_id = {{m:String}}",
        {"m": meeting_id},
    )
    return rows[0]["revision"] if rows else None

"""A cloud service that refuses one stream (its language) stops neither the STT worker nor the meeting.

Through a real ``palaver run stt`` process with each cloud engine against its local peer, which takes
English only: ana speaks English, ben asks for Welsh and keeps streaming long after ana has stopped. The
worker stays up and logs one error naming ben's stream; ana's finals arrive; ben's audio is consumed as it
comes, so while he still streams his partition's commit follows the log and his ``stream.progress`` lets
the meeting's watermark pass ana's dialogues, which become final before ben stops.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import numpy as np
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from palaver.demo.client import stream_pcm
from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.events.registry import AUDIO_FRAMES, TRANSCRIPTS, topic_name
from palaver.streams.clients import make_consumer
from palaver.textmetrics import word_error_rate
from tests.integration.conftest import CLOUD_KEYS, Pipeline, running_pipeline
from tests.integration.infra import Infra
from tests.integration.meetings import open_meeting, speakers
from tests.integration.test_stt_recovery import partition_of

pytestmark = pytest.mark.integration

SCRIPT = (
    Line("ana", "Good morning, let us start with the budget review."),
    Line("ben", "This speaker asked for a language the service does not take."),
    Line("ana", "The hardware costs came in lower than we planned."),
)
BEN_TAIL_S = 40  # ben streams this much more silence after the script
SPEED = 2.0


@pytest.fixture(scope="module")
async def refusing_pipeline(request: pytest.FixtureRequest, infra: Infra, clickhouse_client: object,
                            tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:  # fmt: skip
    """One STT worker on a cloud engine whose peer takes English only."""
    async with running_pipeline(infra, clickhouse_client, tmp_path_factory, stt_workers=1, engine=request.param,
                                request=request, peer_languages=frozenset({"en"})) as p:  # fmt: skip
        yield p


async def final_dialogues(p: Pipeline, meeting_id: str) -> list[dict]:
    return await p.store.aquery(
        f"SELECT speaker_id, start_ms, dialogue_text AS text, status FROM {p.store.database}.dialogues FINAL "
        "WHERE meeting_id = {m:String} AND status = 'final' ORDER BY start_ms",
        {"m": meeting_id},
    )


async def committed_offset(p: Pipeline, tp: TopicPartition) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=p.settings.bootstrap_servers)
    await admin.start()
    try:
        found = await admin.list_consumer_group_offsets(p.settings.group_id("stt"), partitions=[tp])
    finally:
        await admin.close()
    return found[tp].offset if tp in found else -1


async def end_offset(p: Pipeline, tp: TopicPartition) -> int:
    consumer = make_consumer(p.settings, None)
    await consumer.start()
    try:
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def transcript_events(p: Pipeline, meeting_id: str) -> list[dict]:
    consumer = make_consumer(p.settings, None, topic_name(p.settings.topic_namespace, TRANSCRIPTS.name))
    await consumer.start()
    try:
        out: list[dict] = []
        while batches := await consumer.getmany(timeout_ms=1000):
            out += [json.loads(r.value) for records in batches.values() for r in records]
    finally:
        await consumer.stop()
    return [e for e in out if e.get("meeting_id") == meeting_id]


@pytest.mark.parametrize("refusing_pipeline", ["deepgram", "openai-realtime"], indirect=True)
async def test_a_stream_the_service_refuses_is_skipped_and_the_meeting_goes_on(refusing_pipeline: Pipeline) -> None:
    p = refusing_pipeline
    tracks, placed = meeting_tracks(SCRIPT, Voice())
    meeting = await open_meeting(p.url, tracks)
    meeting_id, ana_id, ben_id = meeting.meeting_id, meeting.people["ana"].user_id, meeting.people["ben"].user_id
    ana_end = placed[-1].end_ms * 16 + 16000  # samples: a second after her last line
    ana = tracks["ana"][:ana_end]
    ben = np.concatenate([tracks["ben"], np.zeros(BEN_TAIL_S * 16000, np.int16)])
    ben_tp = TopicPartition(topic_name(p.settings.topic_namespace, AUDIO_FRAMES.name), partition_of(f"{meeting_id}/{ben_id}"))

    ben_streaming = asyncio.create_task(
        stream_pcm(p.url, meeting_id, meeting.people["ben"], ben, speed=SPEED, language="cy")
    )
    ana_result = await stream_pcm(p.url, meeting_id, meeting.people["ana"], ana, speed=SPEED, language="en")
    assert (ana_result.close_code, ana_result.acked_samples) == (1000, len(ana))

    # While ben still streams: ana's dialogues become final (the watermark passes them on ben's progress).
    deadline = time.monotonic() + 60
    dialogues: list[dict] = []
    while len(dialogues) < 2:
        assert not ben_streaming.done(), f"ana's dialogues were not final before ben stopped: {dialogues}\n{p.stt.tail()}"
        assert time.monotonic() < deadline, f"ana's dialogues never became final: {dialogues}\n{p.stt.tail()}"
        dialogues = await final_dialogues(p, meeting_id)
        await asyncio.sleep(0.5)
    assert speakers(meeting, dialogues) == ["ana", "ana"]
    for d, line in zip(dialogues, (SCRIPT[0], SCRIPT[2]), strict=True):
        assert word_error_rate(line.text, d["text"]) <= 0.25, (line.text, d["text"])

    # ...and ben's partition's commit follows the log: his skipped audio holds nothing back.
    log_end = await end_offset(p, ben_tp)
    while (committed := await committed_offset(p, ben_tp)) < log_end:
        assert not ben_streaming.done(), f"ben's partition committed {committed} < {log_end} while he streamed"
        await asyncio.sleep(0.5)

    ben_result = await ben_streaming
    assert (ben_result.close_code, ben_result.acked_samples) == (1000, len(ben))

    # The worker stayed up, said why once, and never showed its key.
    assert p.stt.proc is not None and p.stt.proc.poll() is None
    log = p.stt.log.read_text(errors="replace")
    errors = [line for line in log.splitlines() if " ERROR " in line and meeting_id in line]
    assert len(errors) == 1 and f"{meeting_id}/{ben_id}" in errors[0] and "'cy'" in errors[0], errors
    assert CLOUD_KEYS[p.engine] not in log

    # On the transcripts topic: ana's finals; for ben his lifecycle and progress, and no transcript.
    deadline = time.monotonic() + 60
    while True:
        events = await transcript_events(p, meeting_id)
        kinds = {name: [e["event"] for e in events if e.get("speaker_id") == user]
                 for name, user in (("ana", ana_id), ("ben", ben_id))}  # fmt: skip
        if "stream.stopped" in kinds["ben"] or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert kinds["ben"][0] == "stream.started" and kinds["ben"][-1] == "stream.stopped", kinds["ben"]
    assert set(kinds["ben"][1:-1]) == {"stream.progress"}, kinds["ben"]
    assert kinds["ana"].count("transcript.final") >= 2 and kinds["ana"][-1] == "stream.stopped", kinds["ana"]
    progress = [e["settled_ms"] for e in events if e["event"] == "stream.progress" and e["speaker_id"] == ben_id]
    assert progress == sorted(progress) and progress[-1] >= placed[-1].end_ms + (BEN_TAIL_S - 5) * 1000, progress
    assert all(e["language"] == "en" for e in events if e["event"] == "transcript.final")

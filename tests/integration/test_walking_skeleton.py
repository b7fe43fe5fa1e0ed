"""One meeting through the real pipeline: ingest -> Kafka -> STT (faster-whisper, or a cloud engine against
its local protocol peer) -> merger -> store writer -> ClickHouse (chdb) -> API, plus a stock Kafka client
reading the topics."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time

import numpy as np
import pytest

from palaver.demo.client import stream_pcm, ws_url
from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.events.registry import DIALOGUES, TRANSCRIPTS, topic_name
from palaver.textmetrics import word_error_rate
from tests.integration.conftest import STT_ENGINES, Pipeline
from tests.integration.meetings import live_socket, open_meeting, speakers, stream_tracks

pytestmark = pytest.mark.integration
WHISPER = pytest.mark.parametrize("pipeline", ["whisper"], indirect=True)  # one pipeline for these tests

SCRIPT = (
    Line("ana", "Welcome to the planning meeting. We have three topics today."),
    Line("ben", "First, the budget for the new office is approved."),
    Line("cho", "That is great news for the whole team.", overlap_ms=1200),
    Line("ana", "Second, we need a volunteer to write the release notes."),
    Line("cho", "I can write them before Friday."),
)


@pytest.fixture(scope="module")
def voice() -> Voice:
    return Voice()


async def wait_for_dialogues(p: Pipeline, meeting_id: str, expected: int, timeout_s: float = 240) -> list[dict]:
    """Final dialogues from ClickHouse once there are ``expected`` of them, all final."""
    deadline = time.monotonic() + timeout_s
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = await p.store.aquery(
            f"SELECT dialogue_id, speaker_id, start_ms, end_ms, dialogue_text AS text, status, revision "
            f"FROM {p.store.database}.dialogues FINAL WHERE meeting_id = {{m:String}} AND status != 'retracted' "
            "ORDER BY start_ms, speaker_id",
            {"m": meeting_id},
        )
        if len(rows) >= expected and all(r["status"] == "final" for r in rows):
            return rows
        await asyncio.sleep(0.5)
    raise AssertionError(f"expected {expected} final dialogues, got {rows}\nSTT:\n{p.stt.tail()}\nmerger:\n{p.merger.tail()}")


@pytest.mark.parametrize("pipeline", STT_ENGINES, indirect=True)
async def test_three_speakers_with_overlap_reach_clickhouse_in_order(pipeline: Pipeline, voice: Voice) -> None:
    tracks, placed = meeting_tracks(SCRIPT, voice)
    meeting = await open_meeting(pipeline.url, tracks)
    meeting_id = meeting.meeting_id
    speed = 4.0 if pipeline.engine == "whisper" else 2.0  # the cloud peers transcribe in this process
    results = await stream_tracks(pipeline.url, meeting, tracks, speed=speed)
    for (speaker, pcm), result in zip(tracks.items(), results, strict=True):
        assert (result.close_code, result.acked_samples) == (1000, len(pcm)), speaker

    dialogues = await wait_for_dialogues(pipeline, meeting_id, expected=len(SCRIPT))

    assert speakers(meeting, dialogues) == [line.speaker_id for line in SCRIPT]
    starts = [d["start_ms"] for d in dialogues]
    assert starts == sorted(starts)
    for d, line in zip(dialogues, placed, strict=True):
        assert abs(d["start_ms"] - line.start_ms) < 400, (d, line)  # media time, whatever the streaming pace
    ben, cho = dialogues[1], dialogues[2]
    assert cho["start_ms"] < ben["end_ms"], "the overlapping speakers' dialogues overlap on the timeline"
    for d, line in zip(dialogues, SCRIPT, strict=True):
        assert word_error_rate(line.text, d["text"]) <= 0.25, (line.text, d["text"])
    wer = word_error_rate(" ".join(p.text for p in placed), " ".join(d["text"] for d in dialogues))
    assert wer <= 0.10, wer

    # Each utterance is stored once, and the read API serves the same dialogues in the same order.
    counts = await pipeline.store.aquery(
        f"SELECT count() AS n, uniqExact(utterance_id) AS u FROM {pipeline.store.database}.utterances FINAL "
        "WHERE meeting_id = {m:String}",
        {"m": meeting_id},
    )
    assert counts[0]["n"] == counts[0]["u"] >= len(SCRIPT)
    async with meeting.people["cho"].client() as http:  # any participant reads the meeting
        body = (await http.get(f"/v1/meetings/{meeting_id}/dialogues")).json()
    assert body["meeting_id"] == meeting_id
    assert [(d["dialogue_id"], d["text"]) for d in body["dialogues"]] == [(d["dialogue_id"], d["text"]) for d in dialogues]

    # A stock Kafka client reads both topics as JSON.
    transcripts = kcat_json(pipeline, topic_name(pipeline.settings.topic_namespace, TRANSCRIPTS.name))
    dialogue_events = kcat_json(pipeline, topic_name(pipeline.settings.topic_namespace, DIALOGUES.name))
    finals = [e for e in transcripts if e["event"] == "transcript.final" and e["meeting_id"] == meeting_id]
    assert set(speakers(meeting, finals)) == {"ana", "ben", "cho"}
    assert all(e["words"] and e["end_ms"] > e["start_ms"] for e in finals)
    assert all(e["run"] == f"{pipeline.engine}:{e['model']}" for e in finals)
    mine = [e for e in transcripts if e.get("meeting_id") == meeting_id]
    # The cloud engines' interim results precede every final of a sentence; the local path drops partials
    # that come too late (at four times real time on two cores, most of them).
    check_partials_precede_finals(mine, every=pipeline.engine != "whisper")
    updates = [e for e in dialogue_events if e["event"] == "dialogue.update" and e["meeting_id"] == meeting_id]
    assert {e["dialogue_id"] for e in updates} >= {d["dialogue_id"] for d in dialogues}
    assert any(e["event"] == "meeting.watermark" and e["meeting_id"] == meeting_id for e in dialogue_events)


def check_partials_precede_finals(events: list[dict], every: bool) -> None:
    """Per stream, in topic order: partials of an utterance come before its final, never after it, and
    (``every``) each final of more than a second has at least one partial since the stream's previous final
    (a one-word utterance may end before the first interim result)."""
    since_final: dict[str, int] = {}
    finalized: set[str] = set()
    for e in events:
        if e["event"] == "transcript.partial":
            assert e["utterance_id"] not in finalized, f"a partial after its final: {e}"
            since_final[e["stream_id"]] = since_final.get(e["stream_id"], 0) + 1
        elif e["event"] == "transcript.final":
            finalized.add(e["utterance_id"])
            partials = since_final.pop(e["stream_id"], 0)
            assert partials or not every or e["end_ms"] - e["start_ms"] <= 1000, f"no partial before {e['text']!r}"
    assert finalized


def kcat_json(p: Pipeline, topic: str) -> list[dict]:
    kcat = shutil.which("kcat")
    assert kcat, "kcat (Debian package kcat) is required; .ci/run installs it"
    out = subprocess.run(
        [kcat, "-b", p.settings.bootstrap_servers, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%s\n"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


@WHISPER
async def test_live_socket_pushes_dialogue_events(pipeline: Pipeline, voice: Voice) -> None:
    tracks, _ = meeting_tracks((Line("dee", "Can everyone hear me clearly now?"),), voice)
    meeting = await open_meeting(pipeline.url, ["dee", "fox"])
    async with live_socket(pipeline.url, meeting, "fox") as live:  # another participant watches
        await asyncio.sleep(0.5)
        result = await stream_pcm(pipeline.url, meeting.meeting_id, meeting.people["dee"], tracks["dee"], speed=4.0)
        assert result.close_code == 1000
        event = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            event = json.loads(await asyncio.wait_for(live.recv(), timeout=120))
            if event["type"] == "dialogue" and event["status"] == "final":
                break
    assert event is not None
    assert {"dialogue_id", "speaker_id", "start_ms", "end_ms", "text", "status", "revision"} <= event.keys()
    assert speakers(meeting, [event]) == ["dee"] and event["status"] == "final"
    assert event["utterances"] and all(u["final"] for u in event["utterances"]), "a final box holds finals only"
    assert " ".join(u["text"] for u in event["utterances"] if u["text"]) == event["text"]
    assert word_error_rate("Can everyone hear me clearly now?", event["text"]) <= 0.2


@WHISPER
async def test_malformed_frame_closes_only_its_stream(pipeline: Pipeline, voice: Voice) -> None:
    import websockets

    tracks, _ = meeting_tracks((Line("eve", "The other stream keeps working."),), voice)
    # One participant per bad stream: each is its own stream, as each was its own speaker before tickets.
    bad_names = ["mallory", *(f"bad{i}" for i in range(6))]
    meeting = await open_meeting(pipeline.url, ["eve", *bad_names])
    meeting_id = meeting.meeting_id
    # Eve names her language; the bundled model is English-only, so it decodes (and reports) English.
    good = asyncio.create_task(
        stream_pcm(pipeline.url, meeting_id, meeting.people["eve"], tracks["eve"], speed=2.0, language="de")
    )

    async def stream_url(name: str) -> str:
        ticket = await meeting.people[name].ticket(meeting_id)
        return f"{ws_url(pipeline.url)}/v1/meetings/{meeting_id}/stream?ticket={ticket}"

    header = json.dumps({"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1})
    async with websockets.connect(await stream_url("mallory")) as bad:
        await bad.send(header)
        await bad.send(np.zeros(1600, "<i2").tobytes())
        await bad.send(b"\x00\x01\x02")  # 3 bytes: not a whole number of 16-bit samples
        with pytest.raises(websockets.ConnectionClosedError):
            while True:
                await bad.recv()
    assert bad.close_code == 4004
    assert "not a whole number of samples" in bad.close_reason

    cases = [
        ([np.zeros(160, "<i2").tobytes()], 4003),  # binary before the header
        ([json.dumps({"sample_rate": 44100, "encoding": "pcm_s16le", "channels": 1})], 4002),
        ([json.dumps({"sample_rate": 16000})], 4001),
        ([json.dumps({"sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1, "language": "en-US"})], 4001),
        ([header, np.zeros(16000, "<i2").tobytes()], 4005),  # 1 s frame > 250 ms
        ([header, json.dumps({"type": "pause"})], 4006),
    ]
    for i, (messages, code) in enumerate(cases):
        async with websockets.connect(await stream_url(f"bad{i}")) as ws:
            for m in messages:
                await ws.send(m)
            with pytest.raises(websockets.ConnectionClosedError):
                while True:
                    await ws.recv()
        assert ws.close_code == code, (i, ws.close_code, ws.close_reason)
        assert ws.close_reason

    result = await good
    assert (result.close_code, result.acked_samples) == (1000, len(tracks["eve"]))
    dialogues = await wait_for_dialogues(pipeline, meeting_id, expected=1)
    assert speakers(meeting, dialogues) == ["eve"]
    assert word_error_rate("The other stream keeps working.", dialogues[0]["text"]) <= 0.2
    utterances = await pipeline.store.aquery(
        f"SELECT DISTINCT language, model FROM {pipeline.store.database}.utterances FINAL WHERE meeting_id = {{m:String}}",
        {"m": meeting_id},
    )
    assert utterances == [{"language": "en", "model": "tiny.en"}]


@WHISPER
async def test_second_session_of_a_speaker_keeps_the_first(pipeline: Pipeline, voice: Voice) -> None:
    first, _ = meeting_tracks((Line("gus", "This is my first session."),), voice)
    second, _ = meeting_tracks((Line("gus", "And now I am back again."),), voice)
    meeting = await open_meeting(pipeline.url, ["gus"])
    meeting_id, gus = meeting.meeting_id, meeting.people["gus"]
    one = await stream_pcm(pipeline.url, meeting_id, gus, first["gus"], speed=4.0)
    two = await stream_pcm(pipeline.url, meeting_id, gus, second["gus"], speed=4.0)
    assert (one.close_code, one.first_sample, one.acked_samples) == (1000, 0, len(first["gus"]))
    assert two.close_code == 1000 and two.acked_samples == len(second["gus"])
    assert two.first_sample >= len(first["gus"]), "the new session continues the stream's timeline"

    deadline = time.monotonic() + 120
    rows: list[dict] = []
    while time.monotonic() < deadline and len(rows) < 2:
        rows = await pipeline.store.aquery(
            f"SELECT text, start_ms FROM {pipeline.store.database}.utterances FINAL WHERE meeting_id = {{m:String}} "
            "ORDER BY start_ms",
            {"m": meeting_id},
        )
        await asyncio.sleep(0.5)
    assert len(rows) == 2, rows
    assert word_error_rate("This is my first session.", rows[0]["text"]) <= 0.2
    assert word_error_rate("And now I am back again.", rows[1]["text"]) <= 0.2

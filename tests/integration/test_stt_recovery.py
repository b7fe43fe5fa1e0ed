"""Three STT workers in one consumer group; one SIGKILLed mid-utterance, then all of them: every scripted
sentence still arrives in ClickHouse as finals exactly once (an utterance id never carries two texts, and
no two utterances of a stream cover the same audio). Both run with each engine, the cloud ones against
their local protocol peers."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from itertools import pairwise

import httpx
import pytest
from aiokafka.partitioner import DefaultPartitioner

from palaver import ids
from palaver.demo.accounts import Meeting
from palaver.demo.script import Line, PlacedLine
from palaver.demo.synth import Voice, meeting_tracks
from palaver.events.registry import AUDIO_FRAMES
from palaver.textmetrics import word_error_rate
from tests.integration.conftest import STT_ENGINES, Pipeline, ServiceProcess, child_env
from tests.integration.infra import free_port
from tests.integration.meetings import open_meeting, speakers, stream_tracks, user_id_for

pytestmark = pytest.mark.integration
WHISPER = pytest.mark.parametrize("scaled_pipeline", ["whisper"], indirect=True)  # one pipeline for these

SPEAKERS = ("ana", "ben", "cho", "dan", "eve", "fay")
SCRIPT = (
    Line("ana", "Good morning, let us start with the budget review for this quarter."),
    Line("ben", "The hardware costs came in lower than we planned in January."),
    Line("cho", "Marketing spent a little more because of the spring campaign.", overlap_ms=800),
    Line("dan", "I would like to move some money into the support team next month."),
    Line("eve", "That sounds reasonable if the numbers stay where they are now."),
    Line("fay", "Let us write the decision down and review it again in June.", overlap_ms=800),
    Line("ana", "Thank you all, the next meeting is on Thursday afternoon."),
    Line("ben", "I will send the notes to everyone before lunch tomorrow."),
)
SPEED = 1.5


@pytest.fixture(scope="module")
def tracks() -> tuple[dict, list[PlacedLine]]:
    return meeting_tracks(SCRIPT, Voice())


def partition_of(stream_id: str) -> int:
    partitions = list(range(AUDIO_FRAMES.partitions))
    return DefaultPartitioner()(stream_id.encode(), partitions, partitions)


def assignments(workers: list[ServiceProcess]) -> list[set[int]]:
    """Each live worker's latest assignment, from its log."""
    out = []
    for w in workers:
        found = re.findall(r"assigned \[([0-9, ]*)\]", w.log.read_text(errors="replace"))
        out.append({int(p) for p in found[-1].split(",") if p.strip()} if found else set())
    return out


async def settled_group(workers: list[ServiceProcess], timeout_s: float = 90) -> list[set[int]]:
    """Wait until the live workers' assignments split every audio partition between them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        owned = assignments(workers)
        if all(owned) and sum(len(o) for o in owned) == AUDIO_FRAMES.partitions and set().union(*owned) == set(range(AUDIO_FRAMES.partitions)):
            return owned
        await asyncio.sleep(0.5)
    raise AssertionError(f"the group never settled: {assignments(workers)}")


async def open_spread_meeting(p: Pipeline, owned: list[set[int]]) -> Meeting:
    """A meeting whose streams land on partitions of every worker, ben's and cho's on the same one.
    Their lines overlap, so when cho's open utterance holds that partition's commit back, ben's audio is
    re-read from inside the utterance he just finished: a restart must resume ben where he was. The ids are
    the server's, but deterministic (``tests.integration.meetings``): the Idempotency-Key of the meeting is
    chosen here so that its id spreads the streams, then the meeting is created with it."""
    tag = uuid.uuid4().hex[:8]
    users = {s: user_id_for(s, tag) for s in SPEAKERS}
    for attempt in range(100_000):
        key = f"spread-{attempt}"
        meeting_id = ids.meeting_id(users[SPEAKERS[0]], key)
        parts = {s: partition_of(ids.stream_id(meeting_id, users[s])) for s in SPEAKERS}
        if all(set(parts.values()) & o for o in owned) and parts["ben"] == parts["cho"]:
            meeting = await open_meeting(p.url, SPEAKERS, tag=tag, meeting_key=key)
            assert meeting.meeting_id == meeting_id
            return meeting
    raise AssertionError("no meeting id spreads over the workers")


def kill_ms(placed: list[PlacedLine]) -> float:
    """Media time to kill at: ben has finished (his final is out), cho is mid-sentence."""
    ben, cho = placed[1], placed[2]
    assert (ben.speaker_id, cho.speaker_id) == ("ben", "cho") and cho.start_ms < ben.end_ms
    return min(ben.end_ms + 1500, (ben.end_ms + cho.end_ms) / 2)


async def stream_meeting(p: Pipeline, meeting: Meeting, tracks: dict) -> None:
    results = await stream_tracks(p.url, meeting, tracks, speed=SPEED)
    for (speaker, pcm), result in zip(tracks.items(), results, strict=True):
        assert (result.close_code, result.acked_samples) == (1000, len(pcm)), speaker


async def at_media_ms(started: float, media_ms: float) -> None:
    await asyncio.sleep(max(0.0, started + media_ms / 1000 / SPEED - time.monotonic()))


async def check_exactly_once(p: Pipeline, meeting: Meeting, placed: list[PlacedLine], timeout_s: float = 240) -> None:
    db, meeting_id = p.store.database, meeting.meeting_id
    deadline = time.monotonic() + timeout_s
    missing: list[PlacedLine] = placed
    rows: list[dict] = []
    while time.monotonic() < deadline:
        rows = await p.store.aquery(
            f"SELECT utterance_id, speaker_id, start_sample, end_sample, start_ms, end_ms, text FROM {db}.utterances FINAL "
            "WHERE meeting_id = {m:String} ORDER BY speaker_id, start_sample",
            {"m": meeting_id},
        )
        rows = [{**r, "speaker_id": name} for r, name in zip(rows, speakers(meeting, rows), strict=True)]
        missing = [line for line in placed if not covering(rows, line)]
        if not missing:
            break
        await asyncio.sleep(1)
    logs = "\n".join(f"{w.log.name}:\n{w.tail(15)}" for w in p.stt_workers)
    assert not missing, f"no final for {missing}\nrows: {rows}\n{logs}"

    # Every scripted sentence is there once: its speaker's finals over its time span say it.
    for line in placed:
        said = " ".join(r["text"] for r in covering(rows, line))
        assert word_error_rate(line.text, said) <= 0.25, (line.text, said)
    assert len(rows) <= len(placed) + 2, rows  # a sentence may split at a pause, not repeat

    # No two utterances of a stream cover the same audio (a duplicate under another id would).
    for a, b in pairwise(rows):
        if a["speaker_id"] == b["speaker_id"]:
            assert a["end_sample"] <= b["start_sample"], (a, b)

    # Redelivered finals (raw rows, before FINAL merges them) reuse the id and say the same thing.
    raw = await p.store.aquery(
        f"SELECT utterance_id, count() AS n, uniqExact(text) AS texts, uniqExact(start_sample, end_sample) AS spans "
        f"FROM {db}.utterances WHERE meeting_id = {{m:String}} GROUP BY utterance_id",
        {"m": meeting_id},
    )
    assert {r["utterance_id"] for r in raw} == {r["utterance_id"] for r in rows}
    assert all(r["texts"] == 1 and r["spans"] == 1 for r in raw), raw


def covering(rows: list[dict], line: PlacedLine) -> list[dict]:
    return [r for r in rows if r["speaker_id"] == line.speaker_id and r["start_ms"] < line.end_ms and r["end_ms"] > line.start_ms]


@pytest.mark.parametrize("scaled_pipeline", STT_ENGINES, indirect=True)
async def test_sigkill_of_one_worker_mid_utterance(scaled_pipeline: Pipeline, tracks: tuple[dict, list[PlacedLine]]) -> None:
    p = scaled_pipeline
    pcm, placed = tracks
    owned = await settled_group(p.stt_workers)
    meeting = await open_spread_meeting(p, owned)
    cho = ids.stream_id(meeting.meeting_id, meeting.people["cho"].user_id)
    victim = next(i for i, o in enumerate(owned) if partition_of(cho) in o)

    started = time.monotonic()
    streaming = asyncio.create_task(stream_meeting(p, meeting, pcm))
    await at_media_ms(started, kill_ms(placed))
    p.stt_workers[victim].kill()  # the other two take its partitions over
    await streaming

    await check_exactly_once(p, meeting, placed)
    p.stt_workers[victim].start()  # back to three for the next test
    await asyncio.to_thread(p.stt_workers[victim].wait_for_log, "stt worker (", 120, 2)


@pytest.mark.parametrize("scaled_pipeline", STT_ENGINES, indirect=True)
async def test_sigkill_and_restart_of_all_workers_mid_meeting(scaled_pipeline: Pipeline, tracks: tuple[dict, list[PlacedLine]]) -> None:
    p = scaled_pipeline
    pcm, placed = tracks
    owned = await settled_group(p.stt_workers)
    meeting = await open_spread_meeting(p, owned)

    started = time.monotonic()
    streaming = asyncio.create_task(stream_meeting(p, meeting, pcm))
    await at_media_ms(started, kill_ms(placed))
    counts = [w.log.read_text(errors="replace").count("stt worker (") for w in p.stt_workers]
    for worker in p.stt_workers:
        worker.kill()
    await asyncio.sleep(1.0)
    for worker in p.stt_workers:
        worker.start()
    for worker, count in zip(p.stt_workers, counts, strict=True):
        await asyncio.to_thread(worker.wait_for_log, "stt worker (", 120, count + 1)
    await streaming

    await check_exactly_once(p, meeting, placed)


@WHISPER
async def test_run_stt_workers_restarts_a_killed_worker(scaled_pipeline: Pipeline) -> None:
    """``palaver run stt --workers 2``: two workers in one group; a SIGKILLed one is restarted (a new pid that
    joins the group again), the other keeps running; the restart is counted on the supervisor's /metrics
    (PALAVER_METRICS_PORT + 2); SIGTERM stops all, the restarted worker too."""
    settings = scaled_pipeline.settings.model_copy(update={"topic_namespace": f"w{uuid.uuid4().hex[:8]}"})
    log = settings.data_dir / "stt-workers.log"
    worker_logs = [settings.log_dir / f"stt-{i}.log" for i in range(2)]
    metrics_port = free_port()
    env = {**child_env(settings), "PALAVER_METRICS_PORT": str(metrics_port)}
    with open(log, "ab") as out:
        parent = subprocess.Popen([sys.executable, "-m", "stack", "run", "stt", "--workers", "2"],
                                  stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip

    def output() -> str:
        return log.read_text(errors="replace")

    async def until(done: Callable[[], bool], timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while not done():
            assert parent.poll() is None and time.monotonic() < deadline, output()
            await asyncio.sleep(0.3)

    def ready(worker: int) -> int:
        return worker_logs[worker].read_text(errors="replace").count("stt worker (") if worker_logs[worker].exists() else 0

    try:
        await until(lambda: ready(0) == 1 and ready(1) == 1)
        pids = {name: int(pid) for name, pid in re.findall(r"(stt-\d): pid (\d+)", output())}
        assert set(pids) == {"stt-0", "stt-1"}, output()
        os.kill(pids["stt-0"], signal.SIGKILL)
        await until(lambda: "restarted stt-0: pid" in output())
        new_pid = int(re.findall(r"restarted stt-0: pid (\d+)", output())[0])
        assert new_pid != pids["stt-0"] and "stt-0 died (killed by SIGKILL); restart attempt 1" in output()
        await until(lambda: ready(0) == 2)  # the new worker consumes in the group again
        os.kill(pids["stt-1"], 0)  # the other worker was left alone
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port + 2}/metrics", timeout=5).text
        assert 'palaver_supervisor_restarts_total{child="stt-0"} 1.0' in metrics, metrics
        assert 'palaver_supervisor_restarts_total{child="stt-1"} 0.0' in metrics, metrics
        parent.terminate()
        assert await asyncio.to_thread(parent.wait, 30) == 0
        for pid in (new_pid, pids["stt-1"]):
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        if parent.poll() is None:
            parent.kill()

"""Two ingest processes behind no sticky routing place every stream as one would.

The pipeline's in-process ingest and a second ``palaver run ingest`` process share nothing but Kafka (the
meetings' timelines in ``ingest.timelines``, ingest/timeline_log.py). One meeting is streamed through the
first alone. The same script, in another meeting, goes round-robin: ana to the first, ben to the second,
and ben is moved mid-line to the first: his network to the second goes silent (the socket stays open, as
after a client's network changed), and he resumes on the first with ``start_sample`` = his last ack. The
second process notices only at its idle limit, while ben streams on the first, and only then lands its stop
(and the last frames it had). Checked: ben's placement is the same on both processes, every connection of
the meeting is on one timeline; each speaker's utterances start at the same samples with the same text
as through one process (the move neither cuts nor repeats ben's line), in the same order; ``palaver
check`` finds nothing lost or doubled. Then the second process is SIGKILLed and started again: it places
ben where he was, after the audio he has.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest
import websockets
from aiokafka.structs import ConsumerRecord

from palaver import ids
from palaver.ack_log import AckLog, ConnectionLog, acked_ranges
from palaver.check.report import to_text
from palaver.demo.accounts import Meeting
from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.events import StreamStartedV1, StreamStoppedV1, decode
from palaver.events.audio_frame_v1 import AUDIO_EVENT, event_type
from palaver.events.registry import AUDIO_FRAMES
from palaver.streams.clients import headers_dict
from palaver.streams.topic_reader import read_topic
from palaver.textmetrics import word_error_rate
from stack.check import check_meeting
from tests.integration.conftest import Pipeline, ServiceProcess, _wait_http, child_env, poll
from tests.integration.infra import free_port
from tests.integration.meetings import ingest_url, open_meeting
from tests.integration.test_replay import LIVE, all_final, final_dialogues, settled

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("pipeline", ["whisper"], indirect=True)]

SCRIPT = (
    Line("ana", "The budget for the new office is approved."),
    Line("ben", "Then we can move in before the end of the month."),
    Line("ana", "I will tell the whole team this afternoon."),
)
RATE = 16000
FRAME = 1600  # 100 ms
SPEED = 4.0  # x real time (the tests' ingest allows 8)
SILENT_IDLE_S = 0.5  # the second process's idle limit: it ends ben's silent socket in the middle of his line
EXTRA_WER = 0.05  # how far one speaker's text through two processes may read from one process's


@asynccontextmanager
async def second_ingest(p: Pipeline, log: Path, idle_s: float = SILENT_IDLE_S) -> AsyncIterator[tuple[ServiceProcess, str]]:
    """``palaver run ingest`` on its own port, on the pipeline's topics and secret key; ``idle_s``: how long
    it waits for a silent socket's next message."""
    port = free_port()
    env = {"PALAVER_API_PORT": str(port), "PALAVER_INGEST_MAX_SPEED": str(p.settings.ingest_max_speed),
           "PALAVER_INGEST_IDLE_S": str(idle_s)}  # fmt: skip
    process = ServiceProcess(p.settings, "ingest", log, env)
    process.start()
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_http(url, timeout_s=90)
        yield process, url
    finally:
        process.stop()


async def connection(url: str, meeting: Meeting, name: str, conn: ConnectionLog, pcm: np.ndarray, start: int,
                     stop: int, *, end: bool, speed: float = SPEED) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """One socket of ``name``'s stream to the ingest at ``url``: the header (``start_sample`` = ``start``),
    the audio ``[start, stop)`` at ``speed``, then ``end`` and the server's 1000, or (``end`` False)
    silence: the client hears nothing more from it (acks on their way are lost) and leaves it open. ``conn``
    logs ready, acks and close. Returns the ``ready`` message and the socket (closed unless silent)."""
    header: dict[str, object] = {"sample_rate": RATE, "encoding": "pcm_s16le", "channels": 1}
    if start:
        header["start_sample"] = start
    ws, ready = await _opened(url, meeting, name, header)
    try:
        conn.ready(ready["first_sample"])

        async def take_acks() -> None:
            async for message in ws:
                body = orjson.loads(message)
                if body.get("type") == "ack":
                    conn.ack(body["samples"])

        acks = asyncio.create_task(take_acks())
        loop = asyncio.get_running_loop()
        began = loop.time()
        for at in range(start, stop, FRAME):
            await asyncio.sleep(max(0.0, began + (at - start) / RATE / speed - loop.time()))
            await ws.send(pcm[at : min(at + FRAME, stop)].tobytes())
        if not end:
            acks.cancel()
            await asyncio.gather(acks, return_exceptions=True)
            conn.closed(1006)
            return ready, ws
        await ws.send(orjson.dumps({"type": "end"}).decode())
        await asyncio.wait_for(acks, timeout=120)
        conn.closed(ws.close_code or 0)
        assert ws.close_code == 1000, ws.close_reason
        assert stop == start or conn.acked == stop, (conn.acked, stop)
        ws.transport.abort()
        return ready, ws
    except BaseException:
        ws.transport.abort()
        raise


async def _opened(url: str, meeting: Meeting, name: str, header: dict[str, object]) -> tuple[Any, dict[str, Any]]:
    """A socket the server answered ``ready`` on, and that answer. 4009 (the process still ends the
    stream's last connection) is tried again, as clients do."""
    for _ in range(100):
        ws = await websockets.connect(await ingest_url(url, meeting.meeting_id, meeting.people[name]), max_size=None)
        await ws.send(orjson.dumps(header).decode())
        try:
            ready = orjson.loads(await ws.recv())
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4009, closed
            await asyncio.sleep(0.1)
            continue
        assert ready["type"] == "ready", ready
        return ws, ready
    raise AssertionError(f"{name}: still refused with 4009 after 10 s")


async def whole(url: str, meeting: Meeting, name: str, pcm: np.ndarray, log: AckLog) -> list[dict[str, Any]]:
    conn = log.connection(meeting.meeting_id, ids.stream_id(meeting.meeting_id, meeting.people[name].user_id))
    return [(await connection(url, meeting, name, conn, pcm, 0, len(pcm), end=True))[0]]


async def moved(first_url: str, then_url: str, meeting: Meeting, name: str, pcm: np.ndarray, at: int,
                log: AckLog) -> tuple[list[dict[str, Any]], int, int | None]:  # fmt: skip
    """``name``'s stream to ``first_url`` until sample ``at``, silent there, then resumed at its last ack on
    ``then_url`` at real time (so the first process ends the silent socket meanwhile): the readies, where
    it resumed, and how the first process closed the silent socket (seen after the resumed one ended)."""
    stream = ids.stream_id(meeting.meeting_id, meeting.people[name].user_id)
    conn = log.connection(meeting.meeting_id, stream)
    before, silent = await connection(first_url, meeting, name, conn, pcm, 0, at, end=False)
    resume = conn.acked
    after, _ = await connection(then_url, meeting, name, log.connection(meeting.meeting_id, stream), pcm, resume,
                                len(pcm), end=True, speed=1.0)  # fmt: skip
    try:
        await asyncio.wait_for(silent.wait_closed(), timeout=30)
        return [before, after], resume, silent.close_code
    finally:
        silent.transport.abort()


async def lifecycle(p: Pipeline, meeting_id: str) -> list[StreamStartedV1 | StreamStoppedV1]:
    """The meeting's stream.started and stream.stopped, in partition order."""
    found: list[StreamStartedV1 | StreamStoppedV1] = []

    def take(record: ConsumerRecord) -> None:
        if record.key.decode().startswith(f"{meeting_id}/") and event_type(headers_dict(record.headers)) != AUDIO_EVENT:
            event = decode(record.value)
            assert isinstance(event, StreamStartedV1 | StreamStoppedV1)
            found.append(event)

    await read_topic(p.settings, AUDIO_FRAMES, None, take)
    return found


async def started_events(p: Pipeline, meeting_id: str) -> list[StreamStartedV1]:
    return [e for e in await lifecycle(p, meeting_id) if isinstance(e, StreamStartedV1)]


async def utterances(p: Pipeline, meeting: Meeting) -> dict[str, list[tuple[int, str]]]:
    """Per speaker name: (start sample, text) of each stored utterance, in stream order."""
    rows = await p.store.aquery(
        f"SELECT speaker_id, start_sample, text FROM {p.store.database}.utterances FINAL "
        "WHERE meeting_id = {m:String} AND run = {r:String} ORDER BY speaker_id, start_sample",
        {"m": meeting.meeting_id, "r": LIVE},
    )
    names = meeting.names()
    out: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        out.setdefault(names[row["speaker_id"]], []).append((row["start_sample"], row["text"]))
    return out


async def settled_dialogues(p: Pipeline, meeting: Meeting) -> list[dict[str, Any]]:
    rows = await poll(lambda: final_dialogues(p, meeting.meeting_id, LIVE), lambda r: all_final(r, len(SCRIPT)),
                      "the meeting's dialogues, final and placed", timeout_s=240)  # fmt: skip
    await settled(p)
    return rows  # type: ignore[no-any-return]


async def test_round_robin_and_a_move_mid_line_give_one_process_transcript(pipeline: Pipeline, tmp_path: Path) -> None:
    tracks, placed = meeting_tracks(SCRIPT, Voice())
    ben_line = next(line for line in placed if line.speaker_id == "ben")
    move_at = (ben_line.start_ms + ben_line.end_ms) // 2 * RATE // 1000 // FRAME * FRAME  # mid-line

    async with second_ingest(pipeline, tmp_path / "ingest-2.log") as (other, other_url):
        one = await open_meeting(pipeline.url, tracks)
        with AckLog(tmp_path / "one.jsonl") as log:
            await asyncio.gather(*(whole(pipeline.url, one, name, pcm, log) for name, pcm in tracks.items()))
        two = await open_meeting(pipeline.url, tracks)
        with AckLog(tmp_path / "two.jsonl") as log:
            _, (ben_readies, resumed_at, silent_closed) = await asyncio.gather(
                whole(pipeline.url, two, "ana", tracks["ana"], log),
                moved(other_url, pipeline.url, two, "ben", tracks["ben"], move_at, log),
            )  # fmt: skip
        one_dialogues = await settled_dialogues(pipeline, one)
        two_dialogues = await settled_dialogues(pipeline, two)

        # Placement: ben resumed where he asked, at the place the other process gave him; one timeline.
        assert 0 < resumed_at <= move_at, (resumed_at, move_at)
        assert silent_closed == 4008, "the second process ended the silent socket at its idle limit"
        first, second = ben_readies
        assert (second["stream_start_ms"], second["first_sample"]) == (first["stream_start_ms"], resumed_at)
        started = await started_events(pipeline, two.meeting_id)
        assert len(started) == 3 and len({s.timeline_epoch_ms for s in started}) == 1, started
        assert len({s.connection for s in started}) == 3 and None not in {s.connection for s in started}
        bens = [s for s in started if s.speaker_id == two.people["ben"].user_id]
        assert [(s.stream_start_ms, s.first_sample) for s in bens] == [(first["stream_start_ms"], 0),
                                                                       (first["stream_start_ms"], resumed_at)]  # fmt: skip
        assert len({s.timeline_epoch_ms for s in await started_events(pipeline, one.meeting_id)}) == 1
        # The second process's stop of ben's first connection landed after his second had started.
        ben_stream = ids.stream_id(two.meeting_id, two.people["ben"].user_id)
        order = [(e.event, e.connection) for e in await lifecycle(pipeline, two.meeting_id) if e.stream_id == ben_stream]
        c1, c2 = bens[0].connection, bens[1].connection
        assert order == [("stream.started", c1), ("stream.started", c2), ("stream.stopped", c1),
                         ("stream.stopped", c2)], order  # fmt: skip

        # The transcript through two processes is the one through one: per speaker the same utterances.
        through_one, through_two = await utterances(pipeline, one), await utterances(pipeline, two)
        assert {n: [s for s, _ in u] for n, u in through_two.items()} == {n: [s for s, _ in u] for n, u in through_one.items()}
        for name, said in through_one.items():
            difference = word_error_rate(" ".join(t for _, t in said), " ".join(t for _, t in through_two[name]))
            assert difference <= EXTRA_WER, (name, said, through_two[name])
        names = two.names()
        assert [names[d["speaker_id"]] for d in two_dialogues] == [one.names()[d["speaker_id"]] for d in one_dialogues]
        for meeting, log_file in ((one, "one.jsonl"), (two, "two.jsonl")):
            acked = acked_ranges((tmp_path / log_file).read_bytes().splitlines(), meeting.meeting_id)
            report = await check_meeting(pipeline.settings, pipeline.store, meeting.meeting_id, acked)
            assert report.valid, to_text(report)
            assert report.checked["dialogues"] == len(SCRIPT), report.checked
        assert any(c.first_sample == resumed_at for c in acked if c.stream_id.endswith(two.people["ben"].user_id))

        # A restarted process keeps the timeline: a fresh connection of ben goes on after his audio.
        other.kill()
        other.start()
        await _wait_http(other_url, timeout_s=90)
        with AckLog(tmp_path / "later.jsonl") as log:
            conn = log.connection(two.meeting_id, ids.stream_id(two.meeting_id, two.people["ben"].user_id))
            later, _ = await connection(other_url, two, "ben", conn, tracks["ben"], 0, 0, end=True)
        assert later["stream_start_ms"] == first["stream_start_ms"]
        assert later["first_sample"] >= len(tracks["ben"]), later
        epochs = {s.timeline_epoch_ms for s in await started_events(pipeline, two.meeting_id)}
        assert len(epochs) == 1, epochs


async def test_run_ingest_workers_share_one_port(pipeline: Pipeline, tmp_path: Path) -> None:
    """``palaver run ingest --workers 2``: two supervised ingest processes bound to one port (SO_REUSEPORT);
    the kernel hands new connections to both, and a stream through the port is placed on the meeting's
    timeline like any other."""
    port = free_port()
    env = {**child_env(pipeline.settings), "PALAVER_DATA_DIR": str(pipeline.settings.data_dir),
           "PALAVER_INGEST_MAX_SPEED": str(pipeline.settings.ingest_max_speed)}  # fmt: skip
    logs = [pipeline.settings.log_dir / f"ingest-{i}.log" for i in range(2)]  # the processes share the secret key
    with open(tmp_path / "workers.log", "ab") as out:
        parent = subprocess.Popen([sys.executable, "-m", "stack", "run", "ingest", "--workers", "2", "--port", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        await _wait_http(url, timeout_s=90)
        for _ in range(30):  # each on a new connection: the kernel picks a process per connection
            async with httpx.AsyncClient() as http:
                await http.get(f"{url}/healthz")
            await asyncio.sleep(0.05)
        served = [log.read_text(errors="replace").count("GET /healthz") if log.exists() else 0 for log in logs]
        assert all(served), (served, (tmp_path / "workers.log").read_text(errors="replace"))
        tracks, _ = meeting_tracks(SCRIPT[:1], Voice())
        meeting = await open_meeting(pipeline.url, tracks)
        with AckLog(tmp_path / "acks.jsonl") as log:
            [ready] = await whole(url, meeting, "ana", tracks["ana"], log)
        assert (ready["first_sample"], ready["stream_start_ms"]) == (0, 0)
    finally:
        parent.terminate()
        parent.wait(timeout=30)

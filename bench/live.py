"""The client side of a pipeline benchmark, shared by ``palaver bench stt`` and ``palaver bench meetings``:
stream a track at real time noting when each frame left, read a meeting's live socket, read the
transcripts topic, and turn events into lags against the send log."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import websockets

from bench.harness import bench_settings, percentile, start_pipeline, stop_pipeline, wait_for_pipeline
from bench.speech import SAMPLE_RATE, SendLog, Track
from palaver.demo.accounts import Meeting, Participant
from palaver.demo.client import ws_url
from palaver.events.registry import TRANSCRIPTS, topic_name
from palaver.settings import Settings
from palaver.streams.clients import ensure_topics, make_consumer

FRAME_MS = 100


async def send_stream(base_url: str, meeting_id: str, speaker: Participant, track: Track, sent: SendLog,
                      on_frame: Any = None) -> dict[str, Any]:  # fmt: skip
    """Stream ``track`` at real time as ``speaker`` (like palaver.demo.client.stream_pcm), noting when each
    frame left."""
    ticket = await speaker.ticket(meeting_id)
    url = f"{ws_url(base_url)}/v1/meetings/{meeting_id}/stream?ticket={ticket}"
    step = sent.frame_samples
    acked = 0
    async with websockets.connect(url, max_size=None) as ws:
        await ws.send(json.dumps({"sample_rate": SAMPLE_RATE, "encoding": "pcm_s16le", "channels": 1}))
        ready = asyncio.get_running_loop().create_future()

        async def read_acks() -> None:
            nonlocal acked
            try:
                async for message in ws:
                    if isinstance(message, str):
                        body = json.loads(message)
                        if body.get("type") == "ready" and not ready.done():
                            ready.set_result(body)
                        elif body.get("type") == "ack":
                            acked = body["samples"]
            except websockets.ConnectionClosed:
                pass

        reader = asyncio.create_task(read_acks())
        body = await asyncio.wait_for(ready, 30)
        sent.stream_start_ms, sent.first_sample = body["stream_start_ms"], body["first_sample"]
        loop = asyncio.get_running_loop()
        started = loop.time()
        for i, at in enumerate(range(0, len(track.pcm), step)):
            await ws.send(track.pcm[at : at + step].tobytes())
            sent.sent_at.append(time.time())
            if on_frame:
                on_frame()
            delay = started + (i + 1) * FRAME_MS / 1000 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        await ws.send(json.dumps({"type": "end"}))
        await reader
        return {"sent": len(track.pcm), "acked": max(0, acked - sent.first_sample), "close_code": ws.close_code}


async def read_live(base_url: str, meeting: Meeting, events: list[tuple[float, dict[str, Any]]],
                    stop: asyncio.Event, connected: asyncio.Event) -> None:  # fmt: skip
    """The meeting's live socket (as its owner): each dialogue message with its arrival time and the
    speaker's name (the track's) in place of its user id."""
    names = meeting.names()
    owner = next(iter(meeting.people.values()))
    ticket = await owner.ticket(meeting.meeting_id, "live")
    url = f"{ws_url(base_url)}/v1/meetings/{meeting.meeting_id}/live?ticket={ticket}"
    async with websockets.connect(url, max_size=None) as ws:
        connected.set()
        while not stop.is_set():
            try:
                message = await asyncio.wait_for(ws.recv(), 0.5)
            except TimeoutError:
                continue
            event = json.loads(message)
            if event.get("type") != "dialogue":  # chat, participants, the meeting: not measured
                continue
            if "speaker_id" in event:
                event["speaker_id"] = names.get(event["speaker_id"], event["speaker_id"])
            events.append((time.time(), event))


class TranscriptsLog:
    """Every event on the transcripts topic, with its produce time (epoch seconds), by meeting."""

    def __init__(self, settings: Settings):
        self._consumer = make_consumer(settings, None, topic_name(settings.topic_namespace, TRANSCRIPTS.name))
        self.by_meeting: dict[str, list[tuple[float, dict[str, Any]]]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        await self._consumer.start()
        try:
            while not stop.is_set():
                for records in (await self._consumer.getmany(timeout_ms=200)).values():
                    for r in records:
                        event = orjson.loads(r.value)
                        self.by_meeting.setdefault(event.get("meeting_id", ""), []).append((r.timestamp / 1000, event))
        finally:
            await self._consumer.stop()

    def stopped(self, meeting_id: str) -> set[str]:
        return {e["speaker_id"] for _, e in self.by_meeting.get(meeting_id, ()) if e["event"] == "stream.stopped"}


def advancing_lags(items: list[tuple[float, str, int]], logs: dict[str, SendLog]) -> list[float]:
    """Lags of the events (arrival, speaker, end_ms) that advance their speaker's covered media time."""
    return [lag for _, lag in advancing_lags_at(items, logs)]


def advancing_lags_at(items: list[tuple[float, str, int]], logs: dict[str, SendLog]) -> list[tuple[float, float]]:
    """As ``advancing_lags``, each with its event's arrival: (arrival, lag), in arrival order."""
    covered: dict[str, int] = {}
    lags = []
    for arrived, speaker, end_ms in sorted(items):
        if speaker in logs and end_ms > covered.get(speaker, -1):
            covered[speaker] = end_ms
            sent = logs[speaker].sent_by_media_ms(end_ms)
            if sent is not None:
                lags.append((arrived, arrived - sent))
    return lags


def utterance_settled_lags(live: list[tuple[float, dict[str, Any]]], logs: dict[str, SendLog]) -> list[float]:
    """Per utterance, the arrival of the first live-socket event that carries it settled (``final``: its
    words will not change) minus when the client sent the audio up to the utterance's end."""
    return [lag for _, lag in utterance_settled_lags_at(live, logs)]


def utterance_settled_lags_at(live: list[tuple[float, dict[str, Any]]],
                              logs: dict[str, SendLog]) -> list[tuple[float, float]]:  # fmt: skip
    """As ``utterance_settled_lags``, each with the arrival of the event that settled it: (arrival, lag)."""
    settled: dict[str, tuple[float, str, int]] = {}
    for ts, e in live:
        for u in e.get("utterances") or ():
            if u["final"] and u["utterance_id"] not in settled:
                settled[u["utterance_id"]] = (ts, e["speaker_id"], u["end_ms"])
    return [(ts, ts - s) for ts, speaker, end_ms in settled.values()
            if speaker in logs and (s := logs[speaker].sent_by_media_ms(end_ms))]  # fmt: skip


def lag_stats(values: list[float]) -> dict[str, Any]:
    """p50, p95, p99 and max (seconds, rounded to ms; None without values) and the number of samples."""
    return {"p50_s": _num(percentile(values, 50)), "p95_s": _num(percentile(values, 95)),
            "p99_s": _num(percentile(values, 99)),
            "max_s": _num(max(values)) if values else None, "samples": len(values)}  # fmt: skip


def _num(x: float) -> float | None:
    return None if x is None or math.isnan(x) else round(x, 3)


async def wait_healthy(url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"{url}/healthz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise TimeoutError(f"{url} never became healthy")


@dataclass
class RunningPipeline:
    settings: Settings
    url: str  # the web process (API, ingest, live socket)
    transcripts: TranscriptsLog  # what the transcripts topic carried, read from the start
    started: dict[str, Any]  # the pipeline's processes (``start_pipeline``)


@contextlib.asynccontextmanager
async def running_pipeline(name: str) -> AsyncIterator[RunningPipeline]:
    """The pipeline's processes on fresh topics (``bench_settings(name)``), healthy, with the transcripts
    topic read as it goes; stopped on exit."""
    with bench_settings(name) as settings:
        await ensure_topics(settings)
        started = start_pipeline(settings, name)
        stop = asyncio.Event()
        transcripts = TranscriptsLog(settings)
        reader = asyncio.create_task(transcripts.run(stop))
        try:
            await asyncio.to_thread(wait_for_pipeline, started)
            url = f"http://127.0.0.1:{settings.api_port}"
            await wait_healthy(url)
            yield RunningPipeline(settings, url, transcripts, started)
        finally:
            stop.set()
            await reader
            stop_pipeline(started)

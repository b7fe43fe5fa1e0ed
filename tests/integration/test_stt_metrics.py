"""The STT worker's Prometheus metrics, scraped over HTTP from a real ``palaver run stt`` process while a
two-speaker clip streams through the ingest and the embedded broker.

Each catalogue metric of the STT worker (``palaver/metrics.py``) must be served and must have moved the
way only a real measurement moves it: histogram counts that match the events on the transcripts topic,
observations in seconds within plausible bounds, the stream gauges up while the streams are open and back
to 0 after they stop, consumer lag for every audio partition.
"""

from __future__ import annotations

import asyncio
import math
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import httpx
import orjson
import pytest
import uvicorn
from aiokafka import AIOKafkaConsumer
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client.parser import text_string_to_metric_families

from palaver import ids
from palaver.auth.secret import load_secret
from palaver.demo.client import stream_pcm
from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.events.registry import AUDIO_FRAMES, TRANSCRIPTS, topic_name
from palaver.settings import Settings
from palaver.streams.clients import ensure_topics
from stack.web import create_app
from tests.integration.conftest import ServiceProcess, make_settings
from tests.integration.infra import Infra, free_port
from tests.integration.meetings import TicketSigner

pytestmark = pytest.mark.integration

SCRIPT = (
    Line("ana", "Welcome everyone, let us look at the numbers for this week."),
    Line("ben", "Sales went up a little and the support queue is shorter now.", overlap_ms=800),
    Line("ana", "Good, then we can plan the release for next Tuesday."),
)
# Real time: the worker dates audio by its Kafka append time as if it came at real pace, so the latency
# histograms mean what their help text says only when it does.
SPEED = 1.0
LAST_BUCKET_S = 30.0  # no latency observation may pass it (a unit error, ms for s, would)


@dataclass
class MeteredStt:
    settings: Settings
    url: str  # the ingest (in this process)
    stt: ServiceProcess
    metrics_url: str


@pytest.fixture(scope="module")
async def metered(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[MeteredStt]:
    """One STT worker process serving /metrics on its own port, fed by the ingest in this process (no
    merger, no store: nothing here reads past the transcripts topic)."""
    tag = uuid.uuid4().hex[:10]
    data_dir = tmp_path_factory.mktemp(f"palaver-metrics-{tag}")
    settings = make_settings(infra, data_dir, f"t{tag}", f"t_{tag}")
    await ensure_topics(settings)
    port = free_port()
    stt = ServiceProcess(settings, "stt", data_dir / "stt.log")
    with mock.patch.dict(os.environ, {"PALAVER_METRICS_PORT": str(port)}):  # the child's environment only
        stt.start()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, {"ingest"}), host="127.0.0.1",
                                           port=settings.api_port, log_level="warning"))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    try:
        await asyncio.to_thread(stt.wait_for_log, "assigned [")
        yield MeteredStt(
            settings, f"http://127.0.0.1:{settings.api_port}", stt, f"http://127.0.0.1:{port}/metrics"
        )
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)
        stt.stop()


# --- reading /metrics -----------------------------------------------------------------------------------


@dataclass
class Scrape:
    """One scrape: every sample by (sample name, sorted labels)."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Scrape:
        scrape = cls()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                scrape.samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return scrape

    def value(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        assert key in self.samples, (
            f"{name}{labels or ''} not served; have {sorted(n for n, _ in self.samples if n.startswith('palaver_stt'))}"
        )
        return self.samples[key]

    def labelled(self, name: str, label: str, **only: str) -> dict[str, float]:
        """Value by ``label`` of the samples of ``name`` whose labels include ``only``."""
        return {
            dict(labels)[label]: v
            for (n, labels), v in self.samples.items()
            if n == name and label in dict(labels) and only.items() <= dict(labels).items()
        }

    def buckets(self, name: str, **labels: str) -> dict[float, float]:
        """Cumulative bucket counts of a histogram by upper bound."""
        out = {}
        for (n, sample_labels), v in self.samples.items():
            found = dict(sample_labels)
            le = found.pop("le", None)
            if n == f"{name}_bucket" and le is not None and found == labels:
                out[float(le)] = v
        return out


async def scrape(http: httpx.AsyncClient, url: str) -> Scrape:
    response = await http.get(url, timeout=5)
    response.raise_for_status()
    return Scrape.parse(response.text)


async def watch_gauges(
    http: httpx.AsyncClient, url: str, peaks: dict[str, float], stop: asyncio.Event
) -> None:
    """The highest value each stream gauge reached while the clip streamed (gauges only show the present)."""
    while not stop.is_set():
        s = await scrape(http, url)
        for name in ("palaver_stt_active_streams", "palaver_stt_speech_streams"):
            peaks[name] = max(peaks.get(name, 0.0), s.value(name))
        await asyncio.sleep(0.2)


# --- the transcripts topic --------------------------------------------------------------------------------


async def transcript_events(
    settings: Settings, meeting_id: str, speakers: set[str], timeout_s: float = 60
) -> list[dict[str, Any]]:
    """The meeting's events on the transcripts topic, once every stream's ``stream.stopped`` is there (the
    worker publishes it after the stream's last final, so every observation of the clip is made by then)."""
    consumer = AIOKafkaConsumer(topic_name(settings.topic_namespace, TRANSCRIPTS.name),
                                bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)  # fmt: skip
    await consumer.start()
    events: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                events += [e for r in records if (e := orjson.loads(r.value)).get("meeting_id") == meeting_id]
            if {e["speaker_id"] for e in events if e["event"] == "stream.stopped"} == speakers:
                return events
    finally:
        await consumer.stop()
    raise AssertionError(
        f"streams never all stopped on the transcripts topic: {[e['event'] for e in events]}"
    )


def audio_partition(stream_id: str) -> int:
    partitions = list(range(AUDIO_FRAMES.partitions))
    return DefaultPartitioner()(stream_id.encode(), partitions, partitions)


# --- the test ---------------------------------------------------------------------------------------------


async def test_stt_worker_serves_measured_metrics(metered: MeteredStt) -> None:
    tracks, _ = meeting_tracks(SCRIPT, Voice())
    meeting_id = ids.meeting_id("usr_metrics", uuid.uuid4().hex)
    # No API here: the test signs each speaker's tickets with the deployment's key, as the API would.
    secret = load_secret(metered.settings)
    people = {name: TicketSigner(secret, ids.user_id(f"{name}-{meeting_id}")) for name in tracks}
    async with httpx.AsyncClient() as http:
        before = await scrape(http, metered.metrics_url)
        assert before.value("palaver_stt_active_streams") == 0

        peaks: dict[str, float] = {}
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch_gauges(http, metered.metrics_url, peaks, stop))
        started = time.monotonic()
        results = await asyncio.gather(
            *(
                stream_pcm(metered.url, meeting_id, people[speaker], pcm, speed=SPEED)
                for speaker, pcm in tracks.items()
            )
        )
        for (speaker, pcm), result in zip(tracks.items(), results, strict=True):
            assert (result.close_code, result.acked_samples) == (1000, len(pcm)), speaker
        events = await transcript_events(metered.settings, meeting_id, {p.user_id for p in people.values()})
        elapsed = time.monotonic() - started
        stop.set()
        await watcher
        after = await scrape(http, metered.metrics_url)

    context = f"\nSTT log:\n{metered.stt.tail()}"
    finals = [e for e in events if e["event"] == "transcript.final"]
    partials = [e for e in events if e["event"] == "transcript.partial"]
    assert len(finals) >= len(SCRIPT), f"{[e['text'] for e in finals]}{context}"
    assert partials, context

    # Stream gauges: both streams were owned at once, someone was speaking, and all is back to 0.
    assert peaks["palaver_stt_active_streams"] == len(tracks), peaks
    assert peaks["palaver_stt_speech_streams"] >= 1, peaks
    assert after.value("palaver_stt_active_streams") == 0
    assert after.value("palaver_stt_speech_streams") == 0

    # One count per event produced: utterances and final latency per final, partial latency per partial.
    assert after.value("palaver_stt_utterances_total", engine="whisper") == len(finals)
    assert after.value("palaver_stt_final_latency_seconds_count") == len(finals)
    assert after.value("palaver_stt_partial_latency_seconds_count") == len(partials)

    # Latencies in seconds, each observation within (0, 30 s]. A final is produced only once the VAD's
    # end-of-speech silence is sure (500 ms, less the 200 ms pad kept in the utterance), even when its decode
    # started earlier (an eager final), so none is under 0.1 s.
    for name, floor_s in (
        ("palaver_stt_final_latency_seconds", 0.1),
        ("palaver_stt_partial_latency_seconds", 0.0),
    ):
        count, total = after.value(f"{name}_count"), after.value(f"{name}_sum")
        buckets = after.buckets(name)
        assert buckets[math.inf] == count, (name, buckets)
        assert buckets[LAST_BUCKET_S] == count, f"{name}: observations above {LAST_BUCKET_S} s: {buckets}"
        assert 0 < total / count <= LAST_BUCKET_S, (name, total, count)
        if floor_s:
            assert max(v for le, v in buckets.items() if le <= floor_s) == 0, (
                f"{name} under {floor_s} s: {buckets}"
            )

    # Decodes: every final and every published partial went through a batched decode call; an eager
    # final's one decode may be published twice, first as a partial, then as the final.
    decodes = after.value("palaver_stt_decode_seconds_count", engine="whisper")
    assert decodes > 0
    assert after.value("palaver_stt_decode_batch_size_count") == decodes
    assert after.value("palaver_stt_real_time_factor_count") == decodes
    decoded_requests = after.value("palaver_stt_decode_batch_size_sum")
    assert decoded_requests >= max(len(finals), len(partials))
    assert decoded_requests / decodes <= 8  # PALAVER_STT_MAX_BATCH
    # One decode thread: the decode time cannot exceed the wall time the clip took, and is not free.
    decode_s = after.value("palaver_stt_decode_seconds_sum", engine="whisper")
    assert 0.01 * decodes < decode_s < elapsed, (decode_s, decodes, elapsed)
    rtf = after.value("palaver_stt_real_time_factor_sum") / decodes
    assert 0.001 < rtf < 5, rtf
    # Served (``value`` asserts it); what it counts is checked by the scheduler's unit tests: two speakers
    # rarely drop a partial, so its value here says nothing.
    after.value("palaver_stt_dropped_partials_total")

    # Consumer lag: the one worker owns every audio partition and reports each, also the idle ones;
    # every one is caught up at the end.
    lag = after.labelled("palaver_consumer_lag_messages", "partition", service="stt")
    carried = {str(audio_partition(ids.stream_id(meeting_id, p.user_id))) for p in people.values()}
    assert set(lag) == {str(p) for p in range(AUDIO_FRAMES.partitions)} and carried <= set(lag), (carried, lag)
    assert all(value == 0 for value in lag.values()), lag

"""The fault suite: meetings streamed at real time while processes of the pipeline are SIGKILLed or the
broker is stopped; ``palaver check`` (its ``check_meeting``, with every client's ack log) finds nothing
lost and nothing duplicated, and the stored transcripts read as well against the script as the same
meetings run without faults.

What the suite asks for (the full size): 5 meetings x 4 speakers streaming real-time speech; a random STT
worker SIGKILLed every 10 s (two workers in the group); the merger and the store writer SIGKILLed once
each (the store writer in its web process, see below); one of two ingest processes SIGKILLed (its clients resume on the other with ``start_sample``); the
broker stopped and started again. The checker reports 0 anomalies in every case, and the stored
transcripts' word error rate is within 1 point of the no-fault run.

What CI runs (``make test``): the full size, 5 meetings x 4 speakers with eight short lines each (about
26 s of speech a meeting, all streamed at once); it takes about 2.5 minutes on two shared cores, as the
streams are real time. ``PALAVER_FAULT_SUITE_SIZE=MxS`` (meetings x speakers) scales it down,
e.g. ``PALAVER_FAULT_SUITE_SIZE=2x3 .venv/bin/python -m pytest -q -m slow``.

Each case opens its own meetings (new ids) on the module's pipeline (ingest, API and store writer in this
process, two STT workers and the merger as ``palaver run`` processes), writes the checker's JSON report
of each meeting to ``$PALAVER_TEST_ARTIFACTS/faults/<case>.json`` (default build/test-artifacts) and only
then asserts on it. The no-fault baseline runs first, in the same session.

The ingest case streams through a load balancer (``BalancingProxy``: new connections in turn to this
process's ingest and a ``palaver run ingest`` beside it) and SIGKILLs the second process mid-meeting: its
clients reconnect through the balancer, which passes the dead process over, and resume with
``start_sample`` on the other.

The store writer's case runs on a pipeline of its own, of processes only: the web process as ``palaver
up`` runs it on the embedded ClickHouse (ingest, API and store writer in one ``palaver run``, owning its
own chdb directory), an STT worker and the merger. It SIGKILLs the web process mid-meeting (the store
writer with ingest and the API: with chdb they share one process) and starts it again; the clients
reconnect and resume. Its dialogues come from the API, and ``palaver check`` runs as a process once the web
process has stopped (chdb: one process per data directory).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from palaver.ack_log import AckLog, acked_ranges
from palaver.broker import embedded as broker
from palaver.check.report import to_json
from palaver.demo.accounts import Meeting, Participant
from palaver.demo.script import Line, PlacedLine
from palaver.demo.synth import Voice, meeting_tracks
from palaver.events.registry import DIALOGUES, TRANSCRIPTS
from palaver.settings import Settings
from palaver.streams.clients import ensure_topics
from palaver.textmetrics import word_error_rate
from stack.check import check_meeting
from tests.integration.browser import artifact
from tests.integration.conftest import (
    Pipeline,
    ServiceProcess,
    _wait_http,
    child_env,
    make_settings,
    poll,
    running_pipeline,
)
from tests.integration.infra import Infra
from tests.integration.meetings import meeting_with, open_meeting, stream_tracks
from tests.integration.proxies import BalancingProxy
from tests.integration.test_multi_ingest import second_ingest
from tests.integration.test_replay import LIVE, all_final, caught_up, final_dialogues, settled

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = os.environ.get("PALAVER_FAULT_SUITE_SIZE", "5x4")  # meetings x speakers (at most 4)
MEETINGS, SPEAKERS = (int(n) for n in SIZE.lower().split("x"))
NAMES = ("ana", "ben", "cleo", "dan")
SENTENCES = (
    "The budget for the new office is approved.",
    "Then we can move in before the end of the month.",
    "I will tell the whole team this afternoon.",
    "Who owns the release notes for this version?",
    "I can write them tonight and share them tomorrow.",
    "Let us meet again on Friday to check the progress.",
    "The customer asked for a demo next week.",
    "We should book the large room for that.",
)
LINES_PER_MEETING = 8  # about 26 s of speech a meeting: two or three STT worker kills
STT_KILL_EVERY_S = 10.0
INGEST_KILL_AT_S = 8.0  # into the meetings (about 26 s of speech each)
WEB_KILL_AT_S = 8.0
# The bound: the faulted run's word error rate against the script at most 1 point above the
# no-fault run's, over all the meetings' words.
EXTRA_WER = 0.01


def script(meeting: int) -> tuple[Line, ...]:
    """Meeting ``meeting``'s lines: speakers in turn, the sentences rotated so meetings differ."""
    return tuple(
        Line(NAMES[i % SPEAKERS], SENTENCES[(i + meeting) % len(SENTENCES)]) for i in range(LINES_PER_MEETING)
    )


@dataclass
class MeetingRun:
    meeting: Meeting
    placed: list[PlacedLine]
    dialogues: list[dict[str, Any]]


@dataclass
class CaseResult:
    runs: list[MeetingRun]
    reports: list[dict[str, Any]]
    faults: list[str]
    reconnects: int = 0  # of the audio sockets, over all streams

    def wer(self) -> float:
        """Over all meetings' words: the stored transcripts against the scripts."""
        reference = " ".join(p.text for r in self.runs for p in r.placed)
        hypothesis = " ".join(d["dialogue_text"] for r in self.runs for d in r.dialogues)
        return word_error_rate(reference, hypothesis)


Faults = Callable[[Pipeline, list[str]], Awaitable[None]]


@dataclass
class Streamed:
    """A case's meetings, streamed: their scripts as placed, every stream's result, the faults done."""

    meetings: list[Meeting]
    placed: list[list[PlacedLine]]
    results: list[list[Any]]
    faults: list[str]
    log: Path  # the clients' ack log


async def stream_case(url: str, people: dict[str, Participant], case: str,
                      faults: Callable[[list[str]], Awaitable[None]] | None, log_dir: Path) -> Streamed:  # fmt: skip
    """Open the meetings (``people`` in each) and stream every speaker of every meeting at real time to
    ``url`` with an ack log while ``faults`` runs; every stream must end with 1000, all its audio acked."""
    voice = Voice()
    tracks = [meeting_tracks(script(m), voice) for m in range(MEETINGS)]
    meetings = [await meeting_with(people, title=f"faults {case} {m}") for m in range(MEETINGS)]
    log = log_dir / f"{case}-acks.jsonl"
    done: list[str] = []
    with AckLog(log) as ack_log:
        streams = asyncio.gather(*(stream_tracks(url, meeting, t, speed=1.0, ack_log=ack_log)
                                   for meeting, (t, _) in zip(meetings, tracks, strict=True)))  # fmt: skip
        injecting = asyncio.ensure_future(faults(done)) if faults else None
        results = await streams
        if injecting is not None:
            injecting.cancel()
            await asyncio.gather(injecting, return_exceptions=True)
    closes = [(r.close_code, r.acked_samples) for rs in results for r in rs]
    expected = [(1000, len(pcm)) for t, _ in tracks for pcm in t.values()]
    assert closes == expected, (done, closes)
    return Streamed(meetings, [placed for _, placed in tracks], results, done, log)


def case_result(case: str, streamed: Streamed, runs: list[MeetingRun], reports: list[dict[str, Any]]) -> CaseResult:
    """The case's result, its report written to ``$PALAVER_TEST_ARTIFACTS/faults/<case>.json`` first."""
    out = artifact(f"faults/{case}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = CaseResult(runs, reports, streamed.faults, sum(len(r.reconnects) for rs in streamed.results for r in rs))
    out.write_text(json.dumps({"case": case, "size": SIZE, "faults": streamed.faults, "wer": result.wer(),
                               "reports": reports}, indent=2))  # fmt: skip
    return result


async def run_case(p: Pipeline, people: dict[str, Participant], case: str, faults: Faults | None,
                   log_dir: Path, ingest: str | None = None) -> CaseResult:  # fmt: skip
    """``stream_case`` on the pipeline (``ingest``: where the audio sockets go, default the pipeline's own
    ingest), then wait until every dialogue is final and stored, and check each meeting."""
    streamed = await stream_case(ingest or p.url, people, case, (lambda done: faults(p, done)) if faults else None,
                                 log_dir)  # fmt: skip
    runs = []
    for meeting, placed in zip(streamed.meetings, streamed.placed, strict=True):
        lines_said = len(placed)
        rows = await poll(lambda m=meeting: final_dialogues(p, m.meeting_id, LIVE),
                          lambda rows, n=lines_said: all_final(rows, n),
                          f"the dialogues of {meeting.meeting_id}, final and placed", timeout_s=300)  # fmt: skip
        runs.append(MeetingRun(meeting, placed, rows))
    await settled(p)
    lines = streamed.log.read_bytes().splitlines()
    reports = [to_json(await check_meeting(p.settings, p.store, r.meeting.meeting_id, acked_ranges(lines, r.meeting.meeting_id)))
               for r in runs]  # fmt: skip
    return case_result(case, streamed, runs, reports)


def restart(process: ServiceProcess, ready: str, done: list[str], started: float) -> None:
    """SIGKILL ``process`` (no flush, no commit), start it again and wait until it is ready."""
    before = process.log.read_text(errors="replace").count(ready)
    pid = process.proc.pid if process.proc else None
    process.kill()
    at = time.monotonic() - started
    done.append(f"{at:.1f}s: SIGKILL {process.service} ({process.log.name}, pid {pid})")
    process.start()
    process.wait_for_log(ready, timeout_s=120, count=before + 1)
    done.append(f"{time.monotonic() - started:.1f}s: {process.service} ({process.log.name}) ready again")


async def kill_stt_workers(p: Pipeline, done: list[str]) -> None:
    """At 10 s, 20 s, ... of the meeting, a random STT worker of the group (seeded: the same order on every
    run, and one that kills each of two workers within the first two kills)."""
    pick = random.Random(4)
    started = time.monotonic()
    for tick in itertools.count(1):
        await asyncio.sleep(max(0.0, started + tick * STT_KILL_EVERY_S - time.monotonic()))
        await asyncio.to_thread(restart, pick.choice(p.stt_workers), "stt worker (", done, started)


async def kill_merger(p: Pipeline, done: list[str]) -> None:
    started = time.monotonic()
    await asyncio.sleep(5.0)
    await asyncio.to_thread(restart, p.merger, "merger ready", done, started)


def broker_faults(infra: Infra) -> Faults:
    async def stop_and_start_broker(p: Pipeline, done: list[str]) -> None:
        """Stop the broker mid-meeting, keep it down a few seconds, start it again on its port."""
        assert infra.broker_root is not None
        port = int(infra.bootstrap.rsplit(":", 1)[1])
        started = time.monotonic()
        await asyncio.sleep(5.0)
        await asyncio.to_thread(broker.stop, infra.broker_root)
        done.append(f"{time.monotonic() - started:.1f}s: broker stopped")
        await asyncio.sleep(3.0)
        await asyncio.to_thread(broker.start, infra.broker_root, port)
        done.append(f"{time.monotonic() - started:.1f}s: broker started again")

    return stop_and_start_broker


@pytest.fixture(scope="module")
async def faults_pipeline(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory):
    """Two STT workers in the group, the merger, and the web part (ingest, API, store writer) here."""
    async with running_pipeline(infra, clickhouse_client, tmp_path_factory, stt_workers=2) as p:
        yield p


@pytest.fixture(scope="module")
async def people(faults_pipeline: Pipeline) -> dict[str, Participant]:
    """The speakers, registered once (the API limits registrations per address), in every meeting."""
    meeting = await open_meeting(faults_pipeline.url, NAMES[:SPEAKERS], title="faults: the speakers")
    return meeting.people


@pytest.fixture(scope="module")
async def baseline(faults_pipeline: Pipeline, people: dict[str, Participant],
                   tmp_path_factory: pytest.TempPathFactory) -> CaseResult:  # fmt: skip
    """The same meetings without faults: every check clean, the word error rate to compare with."""
    result = await run_case(faults_pipeline, people, "no-faults", None, tmp_path_factory.mktemp("faults"))
    invalid = [r for r in result.reports if not r["valid"]]
    assert not invalid, json.dumps(invalid, indent=2)
    return result


def assert_clean_and_as_good(result: CaseResult, baseline: CaseResult) -> None:
    invalid = [r for r in result.reports if not r["valid"]]
    assert not invalid, "\n".join(result.faults) + "\n" + json.dumps(invalid, indent=2)
    assert result.wer() <= baseline.wer() + EXTRA_WER, (result.faults, result.wer(), baseline.wer(),
                                                        [r.dialogues for r in result.runs])  # fmt: skip


async def test_no_faults_baseline_is_clean(baseline: CaseResult) -> None:
    assert baseline.wer() < 0.2, [r.dialogues for r in baseline.runs]


async def test_a_random_stt_worker_sigkilled_every_10_s(faults_pipeline: Pipeline, people: dict[str, Participant],
                                                         baseline: CaseResult, tmp_path: Path) -> None:  # fmt: skip
    result = await run_case(faults_pipeline, people, "stt-workers", kill_stt_workers, tmp_path)
    assert any("SIGKILL stt" in f for f in result.faults), result.faults
    assert_clean_and_as_good(result, baseline)


async def test_the_merger_sigkilled_once(faults_pipeline: Pipeline, people: dict[str, Participant],
                                         baseline: CaseResult, tmp_path: Path) -> None:  # fmt: skip
    result = await run_case(faults_pipeline, people, "merger", kill_merger, tmp_path)
    assert any("SIGKILL merger" in f for f in result.faults), result.faults
    assert_clean_and_as_good(result, baseline)


@asynccontextmanager
async def web_process_pipeline(infra: Infra, tmp_path_factory: pytest.TempPathFactory
                               ) -> AsyncIterator[tuple[Settings, ServiceProcess, str]]:  # fmt: skip
    """A pipeline of processes only, on topics of its own: the web process as ``palaver up`` runs it on the
    embedded ClickHouse (ingest, API and store writer in one ``palaver run``, owning a chdb directory of its
    own in its data dir), an STT worker and the merger. Yields its settings, the web process and its URL."""
    tag = uuid.uuid4().hex[:10]
    data_dir = tmp_path_factory.mktemp(f"palaver-web-{tag}")
    settings = make_settings(infra, data_dir, f"t{tag}", "palaver")
    await ensure_topics(settings)
    env = {"PALAVER_API_PORT": str(settings.api_port), "PALAVER_INGEST_MAX_SPEED": str(settings.ingest_max_speed)}
    web = ServiceProcess(settings, "ingest api store", data_dir / "web.log", env)
    others = [ServiceProcess(settings, "stt", data_dir / "stt.log"), ServiceProcess(settings, "merger", data_dir / "merger.log")]
    url = f"http://127.0.0.1:{settings.api_port}"
    for process in (web, *others):
        process.start()
    try:
        await _wait_http(url, timeout_s=120)
        await asyncio.to_thread(others[0].wait_for_log, "stt worker (")
        await asyncio.to_thread(others[1].wait_for_log, "merger ready")
        yield settings, web, url
    finally:
        for process in (web, *others):
            process.stop()


def kill_web(web: ServiceProcess, url: str) -> Callable[[list[str]], Awaitable[None]]:
    async def sigkill_web(done: list[str]) -> None:
        """Mid-meeting: SIGKILL the web process (the store writer with it), start it again at once."""
        started = time.monotonic()
        await asyncio.sleep(WEB_KILL_AT_S)
        pid = web.proc.pid if web.proc else None
        await asyncio.to_thread(web.kill)
        done.append(f"{time.monotonic() - started:.1f}s: SIGKILL web: ingest, api, store writer (pid {pid})")
        web.start()
        await _wait_http(url, timeout_s=120)
        done.append(f"{time.monotonic() - started:.1f}s: web ready again")

    return sigkill_web


async def served_dialogues(meeting: Meeting) -> list[dict[str, Any]]:
    """The meeting's dialogues as the API serves them (its live run), as ``final_dialogues``' rows."""
    async with next(iter(meeting.people.values())).client() as http:
        response = await http.get(f"/v1/meetings/{meeting.meeting_id}/dialogues")
    response.raise_for_status()
    rows = sorted(response.json()["dialogues"], key=lambda d: (d["start_ms"], d["dialogue_id"]))
    return [{**d, "dialogue_text": d["machine_text"]} for d in rows]


async def palaver_check(settings: Settings, meeting_id: str, client_log: Path) -> dict[str, Any]:
    """``palaver check --json`` in a process of its own: with chdb, the store's data directory is read by one
    process at a time, so only once the web process has stopped."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "stack", "check", "--meeting", meeting_id, "--client-log", str(client_log), "--json",
        env=child_env(settings), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=300)
    assert process.returncode in (0, 1), err.decode()
    return json.loads(out)


async def test_the_web_process_with_the_store_writer_sigkilled_once(infra: Infra, baseline: CaseResult,
                                                                    tmp_path_factory: pytest.TempPathFactory,
                                                                    tmp_path: Path) -> None:  # fmt: skip
    """The store writer SIGKILLed mid-meeting, as it runs on the embedded ClickHouse: in the web process,
    with ingest and the API (the clients reconnect once it is back), on a pipeline of processes only, so
    that the test's own process never holds that store's data directory. The dialogues come from the API;
    ``palaver check`` runs once the web process has stopped."""
    async with web_process_pipeline(infra, tmp_path_factory) as (settings, web, url):
        people = (await open_meeting(url, NAMES[:SPEAKERS], title="faults: the speakers")).people
        streamed = await stream_case(url, people, "web", kill_web(web, url), tmp_path)
        runs = []
        for meeting, placed in zip(streamed.meetings, streamed.placed, strict=True):
            lines_said = len(placed)
            rows = await poll(lambda m=meeting: served_dialogues(m), lambda rows, n=lines_said: all_final(rows, n),
                              f"the dialogues of {meeting.meeting_id}, final and placed", timeout_s=300)  # fmt: skip
            runs.append(MeetingRun(meeting, placed, rows))
        await caught_up(settings, [("merger", TRANSCRIPTS.name), ("store", TRANSCRIPTS.name), ("store", DIALOGUES.name)])
        web.stop()
        reports = [await palaver_check(settings, r.meeting.meeting_id, streamed.log) for r in runs]
    result = case_result("web", streamed, runs, reports)
    assert any("SIGKILL web" in f for f in result.faults), result.faults
    assert result.reconnects >= 1, "no client reconnected"
    assert_clean_and_as_good(result, baseline)


def kill_ingest(second: ServiceProcess) -> Faults:
    async def kill_second_ingest(p: Pipeline, done: list[str]) -> None:
        """Once every stream is placed and speaking: SIGKILL the second ingest process, for good."""
        started = time.monotonic()
        await asyncio.sleep(INGEST_KILL_AT_S)
        pid = second.proc.pid if second.proc else None
        await asyncio.to_thread(second.kill)
        done.append(f"{time.monotonic() - started:.1f}s: SIGKILL ingest ({second.log.name}, pid {pid})")

    return kill_second_ingest


async def test_one_of_two_ingest_processes_sigkilled(faults_pipeline: Pipeline, people: dict[str, Participant],
                                                     baseline: CaseResult, tmp_path: Path) -> None:  # fmt: skip
    p = faults_pipeline
    async with (second_ingest(p, tmp_path / "ingest-2.log", idle_s=p.settings.ingest_idle_s) as (second, url),
                BalancingProxy([p.url, url]) as balancer):  # fmt: skip
        result = await run_case(p, people, "ingest", kill_ingest(second), tmp_path, ingest=balancer.url)
    assert any("SIGKILL ingest" in f for f in result.faults), result.faults
    assert 1 in balancer.served[: MEETINGS * SPEAKERS], "no stream went to the second process"
    assert result.reconnects >= 1, "no client of the killed process reconnected"
    assert_clean_and_as_good(result, baseline)


async def test_the_broker_stopped_and_started_again(faults_pipeline: Pipeline, people: dict[str, Participant],
                                                    baseline: CaseResult, infra: Infra, tmp_path: Path) -> None:  # fmt: skip
    """Last in the module: it restarts the session's broker (the others then find it back on its port)."""
    if infra.broker_root is None:
        pytest.skip("the broker is a container here; the embedded broker is the one this case restarts")
    result = await run_case(faults_pipeline, people, "broker", broker_faults(infra), tmp_path)
    assert any("broker started again" in f for f in result.faults), result.faults
    assert_clean_and_as_good(result, baseline)

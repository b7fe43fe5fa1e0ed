"""The fault suite: meetings streamed at real time while processes of the pipeline are SIGKILLed or the
broker is stopped; ``palaver check`` (its ``check_meeting``, with every client's ack log) finds nothing
lost and nothing duplicated, and the stored transcripts read as well against the script as the same
meetings run without faults.

What the suite asks for (the full size): 5 meetings x 4 speakers streaming real-time speech; a random STT
worker SIGKILLed every 10 s (two workers in the group); the merger and the store writer SIGKILLed once
each; one of two ingest processes SIGKILLed (its clients resume on the other with ``start_sample``); the
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

Not here yet, skipped with its reason: the store writer's SIGKILL (with the embedded ClickHouse, chdb
holds one data directory per process, so the store writer cannot run as a process of its own beside the
checker; it runs in this process).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
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
from palaver.textmetrics import word_error_rate
from stack.check import check_meeting
from tests.integration.browser import artifact
from tests.integration.conftest import Pipeline, ServiceProcess, poll, running_pipeline
from tests.integration.infra import Infra
from tests.integration.meetings import meeting_with, open_meeting, stream_tracks
from tests.integration.proxies import BalancingProxy
from tests.integration.test_multi_ingest import second_ingest
from tests.integration.test_replay import LIVE, all_final, final_dialogues, settled

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


async def run_case(p: Pipeline, people: dict[str, Participant], case: str, faults: Faults | None,
                   log_dir: Path, ingest: str | None = None) -> CaseResult:  # fmt: skip
    """Open the meetings (``people`` in each), stream every speaker of every meeting at real time with an
    ack log while ``faults`` runs, wait until every dialogue is final and stored, and check each meeting.
    ``ingest``: where the audio sockets go (default: the pipeline's own ingest)."""
    voice = Voice()
    tracks = [meeting_tracks(script(m), voice) for m in range(MEETINGS)]
    meetings = [await meeting_with(people, title=f"faults {case} {m}") for m in range(MEETINGS)]
    log = log_dir / f"{case}-acks.jsonl"
    done: list[str] = []
    with AckLog(log) as ack_log:
        streams = asyncio.gather(*(stream_tracks(ingest or p.url, meeting, t, speed=1.0, ack_log=ack_log)
                                   for meeting, (t, _) in zip(meetings, tracks, strict=True)))  # fmt: skip
        injecting = asyncio.ensure_future(faults(p, done)) if faults else None
        results = await streams
        if injecting is not None:
            injecting.cancel()
            await asyncio.gather(injecting, return_exceptions=True)
    closes = [(r.close_code, r.acked_samples) for rs in results for r in rs]
    expected = [(1000, len(pcm)) for t, _ in tracks for pcm in t.values()]
    assert closes == expected, (done, closes)
    runs = []
    for meeting, (_, placed) in zip(meetings, tracks, strict=True):
        lines_said = len(placed)
        rows = await poll(lambda m=meeting: final_dialogues(p, m.meeting_id, LIVE),
                          lambda rows, n=lines_said: all_final(rows, n),
                          f"the dialogues of {meeting.meeting_id}, final and placed", timeout_s=300)  # fmt: skip
        runs.append(MeetingRun(meeting, placed, rows))
    await settled(p)
    lines = log.read_bytes().splitlines()
    reports = [to_json(await check_meeting(p.settings, p.store, r.meeting.meeting_id, acked_ranges(lines, r.meeting.meeting_id)))
               for r in runs]  # fmt: skip
    out = artifact(f"faults/{case}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    result = CaseResult(runs, reports, done, sum(len(r.reconnects) for rs in results for r in rs))
    out.write_text(json.dumps({"case": case, "size": SIZE, "faults": done, "wer": result.wer(), "reports": reports},
                              indent=2))  # fmt: skip
    return result


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


@pytest.mark.skip(reason="with the embedded ClickHouse (chdb) one process holds the data directory: the store "
                         "writer runs in the test's process beside the checker and cannot be SIGKILLed alone")  # fmt: skip
async def test_the_store_writer_sigkilled_once() -> None:
    raise AssertionError("unreachable")


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

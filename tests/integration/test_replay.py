"""``palaver replay`` on the real pipeline: a meeting streamed live, replayed with another decode setting into
a second run that the running merger and store writer build beside the live one, compared with ``palaver
runs``, replayed again to no effect; and the meetings a replay refuses."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.events.registry import DIALOGUES, TRANSCRIPTS, TopicSpec, topic_name
from palaver.runs import replay_run
from palaver.settings import Settings
from palaver.streams.clients import make_consumer
from stack.runs import compare_text, list_text
from tests.integration.conftest import Pipeline, child_env, poll
from tests.integration.meetings import open_meeting, stream_tracks

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("pipeline", ["whisper"], indirect=True)]

LIVE = "whisper:tiny.en"
SCRIPT = (
    Line("ana", "The budget for the new office is approved."),
    Line("ben", "Then we can move in before the end of the month."),
    Line("ana", "I will tell the whole team this afternoon."),
)


async def palaver(settings: Settings, *argv: str) -> tuple[int, str, str]:
    """Run the ``palaver`` command in a process of its own: (exit status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "stack", *argv, env=child_env(settings),
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=600)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def all_final(rows: list[dict[str, Any]], expected: int) -> bool:
    """Every dialogue final and placed: no revision of the run is still to come (a final dialogue gets one
    more revision when the watermark places it)."""
    return len(rows) == expected and all(r["status"] == "final" and r["placed"] for r in rows)


async def final_dialogues(p: Pipeline, meeting_id: str, run: str) -> list[dict[str, Any]]:
    """The run's dialogues, live and final (not retracted), in media order."""
    return await p.store.aquery(
        f"SELECT dialogue_id, speaker_id, start_ms, dialogue_text, status, placed, revision, utterance_ids "
        f"FROM {p.store.database}.dialogues FINAL WHERE meeting_id = {{m:String}} AND run = {{r:String}} "
        "AND status != 'retracted' ORDER BY start_ms, dialogue_id",
        {"m": meeting_id, "r": run},
    )


async def stored(p: Pipeline, meeting_id: str, run: str) -> dict[str, Any]:
    """What the store holds of one run: its dialogues and utterances as readers see them (FINAL)."""
    utterances = await p.store.aquery(
        f"SELECT utterance_id, start_ms, end_ms, text, event_id FROM {p.store.database}.utterances FINAL "
        "WHERE meeting_id = {m:String} AND run = {r:String} ORDER BY utterance_id",
        {"m": meeting_id, "r": run},
    )
    return {"dialogues": await final_dialogues(p, meeting_id, run), "utterances": utterances}


async def store_clock(p: Pipeline) -> int:
    return int((await p.store.aquery("SELECT toUnixTimestamp64Milli(now64(3)) AS t"))[0]["t"])


async def rows_since(p: Pipeline, table: str, meeting_id: str, run: str, since_ms: int) -> int:
    """Rows of the run inserted into ``table`` since ``since_ms`` (without FINAL: every insert counts, and
    a background merge keeps the newest of equal rows, so it cannot hide one)."""
    rows = await p.store.aquery(
        f"SELECT count() AS n FROM {p.store.database}.{table} WHERE meeting_id = {{m:String}} AND run = {{r:String}} "
        "AND toUnixTimestamp64Milli(inserted_at) >= {t:Int64}",
        {"m": meeting_id, "r": run, "t": since_ms},
    )
    return int(rows[0]["n"])


async def topic_events(settings: Settings, spec: TopicSpec, meeting_id: str) -> list[dict[str, Any]]:
    """Every event of the meeting on a topic, in each partition's order."""
    topic = topic_name(settings.topic_namespace, spec.name)
    consumer = make_consumer(settings, None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(spec.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        events: list[dict[str, Any]] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                events += [orjson.loads(r.value) for r in records if r.key == meeting_id.encode()]
        return events
    finally:
        await consumer.stop()


async def caught_up(settings: Settings, groups_topics: Sequence[tuple[str, str]]) -> None:
    """Until each consumer group has committed its topic to the end it has now: what was published before
    is processed (the merger's output included, when its topic comes after the merger's)."""
    for group, name in groups_topics:
        topic = topic_name(settings.topic_namespace, name)
        reader = make_consumer(settings, group)
        await reader.start()
        try:
            tps = [TopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
            ends = await reader.end_offsets(tps)

            async def behind(reader: Any = reader, tps: list[TopicPartition] = tps, ends: Any = ends) -> list[Any]:
                return [tp for tp in tps if ends[tp] and ((await reader.committed(tp)) or 0) < ends[tp]]

            await poll(behind, lambda left: not left, f"{group} to commit {name}", timeout_s=240)
        finally:
            await reader.stop()


async def settled(p: Pipeline) -> None:
    """The merger has merged everything on the transcripts topic, and the store has stored it all."""
    await caught_up(p.settings, [("merger", TRANSCRIPTS.name), ("store", TRANSCRIPTS.name), ("store", DIALOGUES.name)])


def changes(before: dict[str, list[dict[str, Any]]], after: dict[str, list[dict[str, Any]]]) -> list[Any]:
    """The rows that differ, as (table, before, after)."""
    return [(table, b, a) for table in before for b, a in zip(before[table], after[table], strict=False) if a != b] + [
        (table, len(before[table]), len(after[table])) for table in before if len(before[table]) != len(after[table])]  # fmt: skip


def by_id(events: list[dict[str, Any]], run: str, kinds: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The run's events of ``kinds`` by event id; a repeated id must carry the same event."""
    out: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.get("run") == run and event["event"] in kinds:
            assert out.setdefault(event["event_id"], event) == event, f"one id, two events: {event}"
    return out


async def test_a_replay_makes_a_second_run_beside_the_live_one_and_a_second_replay_adds_nothing(pipeline: Pipeline) -> None:
    p = pipeline
    tracks, _ = meeting_tracks(SCRIPT, Voice())
    meeting = await open_meeting(p.url, tracks)
    m = meeting.meeting_id
    results = await stream_tracks(p.url, meeting, tracks, speed=4.0)
    assert all(r.close_code == 1000 for r in results)
    live = await poll(lambda: final_dialogues(p, m, LIVE), lambda rows: all_final(rows, len(SCRIPT)),
                      "the live run's final dialogues", timeout_s=240)  # fmt: skip
    await settled(p)
    live_before = await stored(p, m, LIVE)

    code, out, err = await palaver(p.settings, "replay", "--meeting", m, "--set", "whisper_beam_size=2", "--nice", "0")
    run = replay_run("whisper", "tiny.en", {"whisper_beam_size": 2})
    assert code == 0, f"{out}\n{err}"
    assert f"replaying into run {run}" in out and f"into run {run}" in out.splitlines()[-1], out

    # The running merger and store writer build the replay's run beside the live one: the same utterances
    # (the same audio, the same VAD), decoded with beam 2.
    replayed = await poll(lambda: final_dialogues(p, m, run), lambda rows: all_final(rows, len(live)),
                          "the replay run's final dialogues", timeout_s=240)  # fmt: skip
    assert [(d["speaker_id"], d["utterance_ids"]) for d in replayed] == [(d["speaker_id"], d["utterance_ids"]) for d in live]
    assert all(d["dialogue_text"] for d in replayed)
    await settled(p)
    after_one = await stored(p, m, run)
    assert len(after_one["utterances"]) == len(live_before["utterances"])

    listed = await list_text(p.store, m)
    assert [line.split()[:2] for line in listed.splitlines()[2:]] == [[LIVE, "live"], [run, "replay"]], listed
    compared = await compare_text(p.store, m, [])
    assert compared.splitlines()[0] == f"meeting {m}: run B {run} against run A {LIVE}", compared
    assert "latency: not in the store" in compared and compared.count(" words in A, ") == 3, compared
    async with meeting.people["ben"].client() as http:
        body = (await http.get(f"/v1/meetings/{m}/runs/compare")).json()
        assert (body["a"]["run"], body["b"]["run"], body["b"]["replay"]) == (LIVE, run, True), body
        assert {s["speaker_id"] for s in body["speakers"]} == {d["speaker_id"] for d in live}
        shown = (await http.get(f"/v1/meetings/{m}/dialogues")).json()
        assert shown["run"] == LIVE, "the meeting still shows its live run"
        assert (await http.get(f"/v1/meetings/{m}/dialogues", params={"run": run})).json()["dialogues"]

    transcripts_one = by_id(await topic_events(p.settings, TRANSCRIPTS, m), run,
                            ("transcript.final", "stream.started", "stream.stopped"))  # fmt: skip
    assert {e["event"] for e in transcripts_one.values()} == {"transcript.final", "stream.started", "stream.stopped"}
    dialogue_events_one = [e for e in await topic_events(p.settings, DIALOGUES, m) if e["run"] == run]
    assert not [e for e in await topic_events(p.settings, TRANSCRIPTS, m)
                if e.get("run") == run and e["event"] in ("transcript.partial", "stream.progress")]  # fmt: skip

    # The same replay again: the same events with the same ids, which change nothing downstream.
    before_two = await store_clock(p)
    code, out, err = await palaver(p.settings, "replay", "--meeting", m, "--set", "whisper_beam_size=2", "--nice", "0")
    assert code == 0, f"{out}\n{err}"
    await settled(p)
    transcripts = await topic_events(p.settings, TRANSCRIPTS, m)
    transcripts_two = by_id(transcripts, run, ("transcript.final", "stream.started", "stream.stopped"))
    assert transcripts_two == transcripts_one, "the second replay published the same events, nothing else"
    assert sum(e.get("run") == run and e["event"] == "transcript.final" for e in transcripts) == 2 * sum(
        e["event"] == "transcript.final" for e in transcripts_one.values()), "it did publish them again"  # fmt: skip
    dialogue_events = await topic_events(p.settings, DIALOGUES, m)
    assert [e for e in dialogue_events if e["run"] == run] == dialogue_events_one, "the merger made nothing new"
    assert await stored(p, m, run) == after_one, "no row added or changed"
    assert await rows_since(p, "dialogues", m, run, before_two) == 0, "no dialogue row written again"
    assert await rows_since(p, "utterances", m, run, before_two) > 0, "the same utterance rows, upserted"
    live_after = await stored(p, m, LIVE)
    assert live_after == live_before, f"the live run is untouched: {changes(live_before, live_after)}"
    assert [await rows_since(p, table, m, LIVE, before_two) for table in ("dialogues", "utterances")] == [0, 0]


async def test_a_replay_refuses_an_erased_meeting_and_one_without_audio(pipeline: Pipeline) -> None:
    p = pipeline
    silent = await open_meeting(p.url, ["cy"])
    code, out, err = await palaver(p.settings, "replay", "--meeting", silent.meeting_id)
    assert code == 1 and f"no audio of meeting {silent.meeting_id} on the audio topic" in err, (out, err)
    assert "keeps audio 7 days" in err

    code, _, err = await palaver(p.settings, "replay", "--meeting", "mtg_nobody")
    assert code == 1 and "and no such meeting on the meetings topic" in err, err

    erased = await open_meeting(p.url, ["dee"])
    async with erased.people["dee"].client() as http:
        assert (await http.delete(f"/v1/meetings/{erased.meeting_id}")).status_code == 204
    code, _, err = await palaver(p.settings, "replay", "--meeting", erased.meeting_id)
    assert (code, err.strip()) == (1, f"palaver: meeting {erased.meeting_id} was erased: it is never replayed")


async def test_a_backfill_replays_the_meetings_created_since_a_date_and_again_adds_nothing(pipeline: Pipeline) -> None:
    p = pipeline
    script = SCRIPT[:2]
    tracks, _ = meeting_tracks(script, Voice())
    before = await open_meeting(p.url, tracks)
    await stream_tracks(p.url, before, tracks, speed=4.0)
    await asyncio.sleep(0.05)
    since = datetime.fromtimestamp(time.time(), UTC).isoformat(timespec="milliseconds")
    await asyncio.sleep(0.05)
    spoken = await open_meeting(p.url, tracks)
    results = await stream_tracks(p.url, spoken, tracks, speed=4.0)
    assert all(r.close_code == 1000 for r in results)
    silent = await open_meeting(p.url, ["cy"])
    erased = await open_meeting(p.url, ["dee"])
    async with erased.people["dee"].client() as http:
        assert (await http.delete(f"/v1/meetings/{erased.meeting_id}")).status_code == 204
    m = spoken.meeting_id
    live = await poll(lambda: final_dialogues(p, m, LIVE), lambda rows: all_final(rows, len(script)),
                      "the live run's final dialogues", timeout_s=240)  # fmt: skip
    await settled(p)

    code, out, err = await palaver(p.settings, "replay", "--since", since, "--set", "whisper_beam_size=3", "--nice", "0")
    run = replay_run("whisper", "tiny.en", {"whisper_beam_size": 3})
    assert code == 0, f"{out}\n{err}"
    assert "backfill: 3 meeting(s): 1 replayed, 2 skipped, 0 refused" in out, out
    assert f"skipped {silent.meeting_id}: " in out and f"skipped {erased.meeting_id}: " in out, out
    assert f"replaying into run {run}" in out and before.meeting_id not in out + err, (out, err)
    assert "backfill: meeting 1/3 " in err and "backfill: meeting 3/3 " in err, err

    replayed = await poll(lambda: final_dialogues(p, m, run), lambda rows: all_final(rows, len(live)),
                          "the backfilled run's final dialogues", timeout_s=240)  # fmt: skip
    assert [d["utterance_ids"] for d in replayed] == [d["utterance_ids"] for d in live]
    assert await final_dialogues(p, before.meeting_id, run) == [], "a meeting before DATE is not replayed"
    await settled(p)
    after_one = await stored(p, m, run)

    before_two = await store_clock(p)
    code, out, err = await palaver(p.settings, "replay", "--since", since, "--set", "whisper_beam_size=3", "--nice", "0")
    assert code == 0, f"{out}\n{err}"
    await settled(p)
    assert await stored(p, m, run) == after_one, "no row added or changed"
    assert await rows_since(p, "dialogues", m, run, before_two) == 0, "no dialogue row written again"


async def test_a_backfill_says_what_is_wrong_with_its_date_and_when_nothing_was_created_since(pipeline: Pipeline) -> None:
    code, _, err = await palaver(pipeline.settings, "replay", "--since", "last tuesday")
    assert code == 2 and "--since 'last tuesday': not an ISO date" in err, err
    code, out, _ = await palaver(pipeline.settings, "replay", "--since", "2999-01-01")
    assert code == 1 and "no meeting was created since 2999-01-01" in out, out

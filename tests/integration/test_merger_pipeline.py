"""The merger through the real pipeline: concurrent live boxes for overlapping speakers, final dialogues
and the merged transcript in ClickHouse, and human edits that machine output never overwrites."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

import httpx
import pytest

from palaver import ids
from palaver.demo.accounts import Meeting
from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.events import DialogueUpdateV1, encode
from palaver.events.insights_v1 import InsightActionItem, MeetingInsightsV1
from palaver.events.registry import DIALOGUES, INSIGHTS, topic_name
from palaver.streams.clients import make_producer
from palaver.textmetrics import word_error_rate
from tests.integration.conftest import Pipeline, poll
from tests.integration.meetings import live_socket, open_meeting, speakers, stream_tracks

pytestmark = pytest.mark.integration

SCRIPT = (
    Line("ana", "Thanks for joining everyone. Today we need to decide the launch date, and we also need to "
                "agree on who writes the announcement."),
    Line("ben", "I think we should launch on Tuesday, because Monday is a public holiday.", overlap_ms=4500),
    Line("cho", "Tuesday works for me, and I can write the announcement.", overlap_ms=1500),
    Line("ana", "Great, then Tuesday it is."),
)


@pytest.fixture(scope="module")
async def meeting(pipeline: Pipeline) -> dict[str, Any]:
    """Stream the overlapping meeting once, watching the live socket; later tests reuse the result."""
    tracks, placed = meeting_tracks(SCRIPT, Voice())
    meeting = await open_meeting(pipeline.url, tracks)
    meeting_id = meeting.meeting_id
    live: list[tuple[float, dict[str, Any]]] = []
    async with live_socket(pipeline.url, meeting) as socket:

        async def watch() -> None:
            async for message in socket:
                live.append((time.monotonic(), json.loads(message)))

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)
        # Real-time pace, as people speak: partials arrive while the overlapping speakers talk.
        results = await stream_tracks(pipeline.url, meeting, tracks, speed=1.0)
        assert all(r.close_code == 1000 for r in results)
        async with meeting.people["ana"].client() as http:
            dialogues = await poll(
                lambda: http.get(f"/v1/meetings/{meeting_id}/dialogues"),
                lambda r: len(r.json()["dialogues"]) == len(SCRIPT) and all(
                    d["status"] == "final" for d in r.json()["dialogues"]),
                what="final dialogues",
            )  # fmt: skip
        await asyncio.sleep(1)
        watcher.cancel()
    return {"id": meeting_id, "meeting": meeting, "placed": placed, "live": live,
            "dialogues": dialogues.json()["dialogues"]}  # fmt: skip


def client(meeting: dict[str, Any], name: str) -> httpx.AsyncClient:
    """An API client signed in as ``name``, one of the meeting's participants."""
    people: Meeting = meeting["meeting"]
    return people.people[name].client()


async def test_overlapping_speakers_boxes_update_concurrently(meeting: dict[str, Any]) -> None:
    updates = [e for _, e in meeting["live"] if e.get("event") == "dialogue.update"]
    live = [e for e in updates if e["status"] == "live"]
    assert live, "partials reach the live socket as live dialogue events"
    ana_id, ben_id = (meeting["meeting"].people[name].user_id for name in ("ana", "ben"))
    first_ana = min((e for e in updates if e["speaker_id"] == ana_id), key=lambda e: e["start_ms"])["dialogue_id"]
    ben = next(e for e in updates if e["speaker_id"] == ben_id)["dialogue_id"]
    sequence = [e["dialogue_id"] for e in live if e["dialogue_id"] in (first_ana, ben)]
    # ana's and ben's boxes are both open and updating at once: their live updates interleave.
    switches = sum(1 for a, b in itertools.pairwise(sequence) if a != b)
    assert switches >= 2, sequence
    for dialogue_id in (first_ana, ben):
        revisions = [e["revision"] for e in updates if e["dialogue_id"] == dialogue_id]
        assert revisions == sorted(revisions) and len(revisions) >= 3, revisions
        assert next(e for e in reversed(updates) if e["dialogue_id"] == dialogue_id)["status"] == "final"


async def test_final_dialogues_and_merged_transcript_in_clickhouse(pipeline: Pipeline, meeting: dict[str, Any]) -> None:
    dialogues = meeting["dialogues"]
    assert speakers(meeting["meeting"], dialogues) == [line.speaker_id for line in SCRIPT]
    assert [d["position"] for d in dialogues] == list(range(len(SCRIPT)))
    for d, line in zip(dialogues, meeting["placed"], strict=True):
        assert abs(d["start_ms"] - line.start_ms) < 400
        assert word_error_rate(line.text, d["text"]) <= 0.25, (line.text, d["text"])
    ana, ben = dialogues[0], dialogues[1]
    assert ben["start_ms"] < ana["end_ms"], "ben spoke over ana"

    async with client(meeting, "cho") as http:
        response = await poll(lambda: http.get(f"/v1/meetings/{meeting['id']}/transcript"),
                              lambda r: r.status_code == 200 and r.json()["revision"] == len(SCRIPT),
                              what="merged transcript")  # fmt: skip
    transcript = response.json()
    lines = transcript["raw_transcript"].splitlines()
    usernames = {p.user_id: p.username for p in meeting["meeting"].people.values()}
    assert lines == [f"{usernames[d['speaker_id']]}: {d['text']}" for d in dialogues], "speakers by username"
    assert transcript["processed_transcript"] == transcript["raw_transcript"]
    assert transcript["watermark_ms"] == 2**62, "every stream stopped: final to the end"
    rows = await pipeline.store.aquery(
        f"SELECT count() AS n FROM {pipeline.store.database}.participants FINAL WHERE meeting_id = {{m:String}}",
        {"m": meeting["id"]},
    )
    assert rows[0]["n"] == 3


async def test_human_edits_survive_machine_revisions(pipeline: Pipeline, meeting: dict[str, Any]) -> None:
    meeting_id = meeting["id"]
    ben = meeting["dialogues"][1]
    ben_id, ana_id = (meeting["meeting"].people[name].user_id for name in ("ben", "ana"))
    path = f"/v1/meetings/{meeting_id}/dialogues/{ben['dialogue_id']}"
    async with client(meeting, "ben") as http, client(meeting, "ana") as ana:
        # The editor is the signed-in caller: ben edits, a name in the body is not taken.
        edit = await http.put(path, json={"text": "Let us launch on Tuesday.", "editor": "mallory"},
                              headers={"Idempotency-Key": "ben-1"})  # fmt: skip
        assert edit.status_code == 202
        retry = await http.put(path, json={"text": "Let us launch on Tuesday."},
                               headers={"Idempotency-Key": "ben-1"})  # fmt: skip
        assert retry.json()["edit_id"] == edit.json()["edit_id"], "a retried request is the same edit"

        def ben_row(r: httpx.Response) -> dict[str, Any]:
            return next(d for d in r.json()["dialogues"] if d["dialogue_id"] == ben["dialogue_id"])

        got = await poll(lambda: http.get(f"/v1/meetings/{meeting_id}/dialogues"),
                         lambda r: ben_row(r)["edited"], what="the edit")  # fmt: skip
        assert ben_row(got)["text"] == "Let us launch on Tuesday."
        assert ben_row(got)["machine_text"] == ben["text"]
        history = (await http.get(f"{path}/history")).json()["edits"]
        assert [(h["action"], h["text"], h["editor"]) for h in history] == [("edit", "Let us launch on Tuesday.", ben_id)]
        transcript = await poll(lambda: http.get(f"/v1/meetings/{meeting_id}/transcript"),
                                lambda r: "Let us launch on Tuesday." in r.json()["processed_transcript"],
                                what="the edit in the processed transcript")  # fmt: skip
        assert ben["text"] in transcript.json()["raw_transcript"]

        # The machine revises the dialogue (a re-run, a late correction): the human's text stays.
        producer = make_producer(pipeline.settings)
        await producer.start()
        revised = DialogueUpdateV1(
            event_id=ids.event_id("dialogue.update", ben["dialogue_id"], "test", 99), dialogue_id=ben["dialogue_id"],
            meeting_id=meeting_id, speaker_id=ben_id, start_ms=ben["start_ms"], end_ms=ben["end_ms"],
            text="machine says something else", status="final", revision=ben["revision"] + 1,
            position=ben["position"], utterance_ids=tuple(ben["utterance_ids"]), run=ben["run"],
        )  # fmt: skip
        topic = topic_name(pipeline.settings.topic_namespace, DIALOGUES.name)
        await producer.send_and_wait(topic, encode(revised), key=meeting_id.encode())
        await producer.stop()
        got = await poll(lambda: http.get(f"/v1/meetings/{meeting_id}/dialogues"),
                         lambda r: ben_row(r)["machine_text"] == "machine says something else",
                         what="the machine revision")  # fmt: skip
        assert ben_row(got)["text"] == "Let us launch on Tuesday." and ben_row(got)["edited"]

        assert (await ana.post(f"{path}/reset")).status_code == 202
        got = await poll(lambda: http.get(f"/v1/meetings/{meeting_id}/dialogues"),
                         lambda r: not ben_row(r)["edited"], what="the reset")  # fmt: skip
        assert ben_row(got)["text"] == "machine says something else"

        assert (await ana.delete(path)).status_code == 202
        await poll(lambda: http.get(f"/v1/meetings/{meeting_id}/dialogues"),
                   lambda r: ben["dialogue_id"] not in {d["dialogue_id"] for d in r.json()["dialogues"]},
                   what="the deletion")  # fmt: skip
        history = (await http.get(f"{path}/history")).json()["edits"]
        assert [(h["action"], h["editor"]) for h in history] == [("edit", ben_id), ("reset", ana_id), ("delete", ana_id)], (
            "the edit history is kept, each edit by whoever made it")  # fmt: skip

        assert (await http.put(f"/v1/meetings/{meeting_id}/dialogues/dlg_unknown", json={"text": "x"})).status_code == 404
        assert (await http.put(path, json={"text": ""})).status_code == 422


async def test_transcript_and_action_item_edits(pipeline: Pipeline, meeting: dict[str, Any]) -> None:
    meeting_id = meeting["id"]
    # An enrichment's result with one task, as the enrichment service would publish it (under a run of its
    # own, read with ?run=, so a real enrichment of the meeting cannot stand in its way).
    task = InsightActionItem(action_item_id="ai_1", description="Write the announcement", assignee="cho",
                             due_date="2026-12-01", dialogue_ids=(meeting["dialogues"][2]["dialogue_id"],))  # fmt: skip
    result = MeetingInsightsV1(
        event_id=ids.event_id("meeting.insights", meeting_id, "test"), enrichment_id="enr_test", meeting_id=meeting_id,
        run="test/local", transcript_run="test", backend="local", trigger="rolling", final=False,
        transcript_revision=1, revision=2, summary_brief="", summary_detailed="", action_items=(task,), keywords=(),
        mood={}, agenda=(), metrics={}, produced_at_ms=int(time.time() * 1000),
    )  # fmt: skip
    producer = make_producer(pipeline.settings)
    await producer.start()
    try:
        await producer.send_and_wait(topic_name(pipeline.settings.topic_namespace, INSIGHTS.name), encode(result),
                                     key=meeting_id.encode())  # fmt: skip
    finally:
        await producer.stop()
    async with client(meeting, "cho") as http:
        items = f"/v1/meetings/{meeting_id}/action-items?run=test/local"
        await poll(lambda: http.get(items), lambda r: len(r.json()) == 1, what="the task")
        patched = await http.patch(f"/v1/meetings/{meeting_id}/action-items/ai_1", json={"status": "done", "priority": "high"})
        assert patched.status_code == 202, patched.text
        got = await poll(lambda: http.get(items), lambda r: r.json() and r.json()[0]["edited"], what="item edit")
        assert (got.json()[0]["status"], got.json()[0]["priority"], got.json()[0]["description"]) == (
            "done", "high", "Write the announcement")  # fmt: skip
        item = f"/v1/meetings/{meeting_id}/action-items/ai_1"
        assert (await http.patch(item, json={"status": "open"})).status_code == 422, "not started is pending"
        assert (await http.patch(item, json={"priority": "medium"})).status_code == 422, "one vocabulary: normal"
        # Edits stored with the older words (edits are kept forever) read in today's: open as pending, medium
        # as normal.
        await pipeline.store.acommand(
            f"INSERT INTO {pipeline.store.database}.edits (edit_id, meeting_id, target_kind, target_id, action, text, "
            "fields, editor, edited_at_ms, idempotency_key, event_id, kafka_topic, kafka_partition, kafka_offset) "
            "VALUES ('edt_old', {m:String}, 'action_item', 'ai_1', 'edit', NULL, "
            "'{\"status\": \"open\", \"priority\": \"medium\"}', 'cho', 4102444800000, '', 'evt_old', 'edits', 0, 0)",
            {"m": meeting_id},
        )  # fmt: skip
        got = await poll(lambda: http.get(items), lambda r: r.json()[0]["status"] != "done", what="the old edit")
        assert (got.json()[0]["status"], got.json()[0]["priority"]) == ("pending", "normal")
        assert (await http.patch(f"/v1/meetings/{meeting_id}/action-items/ai_nope", json={"status": "done"})).status_code == 404
        assert (await http.patch(item, json={})).status_code == 422
        assert (await http.patch(item, json={"due_date": "soon"})).status_code == 422

        transcript = f"/v1/meetings/{meeting_id}/transcript"
        assert (await http.put(transcript, json={"text": "Launch Tuesday; cho writes."})).status_code == 202
        got = await poll(lambda: http.get(transcript), lambda r: r.json()["edited"], what="transcript edit")
        assert got.json()["processed_transcript"] == "Launch Tuesday; cho writes."
        assert got.json()["raw_transcript"].count("\n") == len(SCRIPT) - 1
        assert (await http.put("/v1/meetings/no-such-meeting/transcript", json={"text": "x"})).status_code == 404

"""Enrichment through the real pipeline (broker, chdb, Whisper): a scripted meeting with tasks is streamed,
ended, and its summary, action items with assignees and due dates, keywords, mood, agenda and metrics land
in ClickHouse, the summary streamed in chunks first; rolling results come while it goes on; a meeting whose
clients simply vanish gets its final result when it has been idle for PALAVER_MEETING_IDLE_S; auto-correct
writes machine edits (a remote backend's where its guard accepts them) and the progress of a meeting that
is done is forgotten after PALAVER_ENRICHMENT_STATE_RETENTION_S without losing a later request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import TopicPartition

from palaver import ids
from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.events import DialogueUpdateV1, MeetingWatermarkV1, decode_on
from palaver.events.insights_v1 import MeetingInsightsV1, SummaryChunkV1
from palaver.events.registry import ENRICHMENT_STATE, INSIGHTS, meeting_partition, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_consumer
from tests.integration.conftest import WEB, Infra, Pipeline, poll, running_pipeline
from tests.integration.meetings import live_socket, meeting_with, publish_dialogues, register, stream_tracks
from tests.unit.llm_servers import SUMMARY_PIECES, FakeModelServer, Step, serving

pytestmark = pytest.mark.integration

SCRIPT = (
    Line("alice", "Good morning everyone. We need to ship the release notes this week."),
    Line("bob", "Alice, I will write the release notes by Friday."),
    Line("carol", "Bob, can you also update the pricing page by next Tuesday?"),
    Line("bob", "Sure, I'll update the pricing page by next Tuesday."),
    Line("alice", "Great. Carol, please send the invoice to the customer tomorrow."),
    Line("carol", "Okay, I will send the invoice to the customer tomorrow."),
)
IDLE_S = 8
RETENTION_S = 20
RUN = "whisper:tiny.en"


@pytest.fixture(scope="module")
def model_server() -> Iterator[FakeModelServer]:
    """An OpenAI-compatible endpoint written for the tests (tests/unit/llm_servers.py), answering from a script."""
    with serving("openai") as fake:
        yield fake


@pytest.fixture(scope="module")
async def enriching(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory,
                    model_server: FakeModelServer) -> AsyncIterator[Pipeline]:  # fmt: skip
    """The pipeline with enrichment in its web process: local by default, a rolling result every 2 placed
    dialogues, a short idle time so the abrupt end shows within the test, progress forgotten soon after;
    ``openai`` at the test's server."""
    async with running_pipeline(infra, clickhouse_client, tmp_path_factory, stt_workers=1, web=WEB | {"enrichment"},
                                meeting_idle_s=IDLE_S, enrichment_every_dialogues=2, enrichment_settle_s=30,
                                enrichment_state_retention_s=RETENTION_S,
                                enrichment_openai_base_url=model_server.url + "/v1",
                                enrichment_openai_model="test-model", enrichment_retries=1) as p:  # fmt: skip
        yield p


@pytest.fixture(scope="module")
def tracks() -> dict[str, Any]:
    pcm, _ = meeting_tracks(SCRIPT, Voice())
    return pcm


async def _stream_meeting(pipeline: Pipeline, tracks: dict[str, Any], title: str) -> Any:
    people = {name: await register(pipeline.url, name) for name in tracks}
    meeting = await meeting_with(people, title=title)
    results = await stream_tracks(pipeline.url, meeting, tracks, speed=2.0)
    assert all(r.close_code == 1000 for r in results)
    return meeting


async def _insight_events(settings: Settings, meeting_id: str) -> list[MeetingInsightsV1 | SummaryChunkV1]:
    """Every event of the meeting on the insights topic so far, in order."""
    topic = topic_name(settings.topic_namespace, INSIGHTS.name)
    consumer = make_consumer(settings, None)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(INSIGHTS.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        events = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    if record.key == meeting_id.encode():
                        events.append(decode_on(INSIGHTS, record.value))
        return events  # type: ignore[return-value]
    finally:
        await consumer.stop()


async def _final_row(pipeline: Pipeline, meeting_id: str, trigger: str) -> dict[str, Any]:
    rows = await poll(
        lambda: pipeline.store.aquery(
            f"""SELECT * FROM {pipeline.store.database}.meeting_insights FINAL
                WHERE meeting_id = {{m:String}} AND final""", {"m": meeting_id}),
        lambda rows: any(r["trigger"] == trigger for r in rows),
        what=f"the meeting's {trigger} result", timeout_s=240,
    )  # fmt: skip
    return next(r for r in rows if r["trigger"] == trigger)


def _item(items: list[dict[str, Any]], words: str) -> dict[str, Any]:
    found = [i for i in items if words in i["description"].lower()]
    assert len(found) == 1, (words, items)
    return found[0]


async def test_an_ended_meeting_gets_its_summary_tasks_and_insights(enriching: Pipeline, tracks: dict[str, Any]) -> None:
    people = {name: await register(enriching.url, name) for name in tracks}
    meeting = await meeting_with(people, title="release planning")
    pushed: list[dict[str, Any]] = []
    async with live_socket(enriching.url, meeting) as socket:

        async def watch() -> None:
            async for message in socket:
                body = orjson.loads(message)
                if body.get("type") in ("summary", "insights"):
                    pushed.append(body)

        watcher = asyncio.create_task(watch())
        results = await stream_tracks(enriching.url, meeting, tracks, speed=2.0)
        assert all(r.close_code == 1000 for r in results)
        async with meeting.people["alice"].client() as http:
            ended = await http.post(f"/v1/meetings/{meeting.meeting_id}/end")
            assert ended.status_code == 200, ended.text
        row = await _final_row(enriching, meeting.meeting_id, "ended")
        await poll(lambda: asyncio.sleep(0, pushed), lambda p: any(
            m["type"] == "insights" and m.get("enrichment_id") == row["enrichment_id"] for m in p),
            what="the final result on the live socket", timeout_s=30)  # fmt: skip
        watcher.cancel()
    live_chunks = [m for m in pushed if m["type"] == "summary" and m["enrichment_id"] == row["enrichment_id"]]
    assert len({m["seq"] for m in live_chunks}) >= 2, "the summary reaches the page in several chunks"
    assert row["backend"] == "local" and row["fallback"] == ""
    assert row["transcript_revision"] == len(SCRIPT)  # every line, placed, was enriched
    result = orjson.loads(row["result"])
    assert {"release notes", "pricing page", "invoice"} & set(result["keywords"])
    assert result["mood"]["overall"]["label"] in {"positive", "neutral", "negative"}
    assert set(result["mood"]["speakers"]) == {"alice", "bob", "carol"}
    assert set(result["metrics"]["speakers"]) == {"alice", "bob", "carol"}
    assert sum(s["share"] for s in result["metrics"]["speakers"].values()) == pytest.approx(1, abs=0.01)
    assert result["agenda"] and all(t["start_ms"] <= t["end_ms"] for t in result["agenda"])

    db = enriching.store.database
    items = await enriching.store.aquery(
        f"""SELECT description, assigned_to, assignee_id, toString(due_date) AS due, status FROM {db}.action_items FINAL
            WHERE meeting_id = {{m:String}} AND run = {{r:String}} AND revision = {{v:UInt64}}""",
        {"m": meeting.meeting_id, "r": row["run"], "v": row["revision"]},
    )  # fmt: skip
    meeting_date = datetime.fromtimestamp(row["produced_at_ms"] / 1000, UTC).date()  # created minutes ago
    notes, pricing, invoice = (_item(items, w) for w in ("release notes", "pricing page", "invoice"))
    assert (notes["assigned_to"], pricing["assigned_to"], invoice["assigned_to"]) == ("bob", "bob", "carol")
    assert invoice["assignee_id"] == meeting.people["carol"].user_id
    assert date.fromisoformat(notes["due"]).weekday() == 4 and date.fromisoformat(notes["due"]) > meeting_date
    assert date.fromisoformat(pricing["due"]).weekday() == 1 and date.fromisoformat(pricing["due"]) > meeting_date
    assert date.fromisoformat(invoice["due"]) == meeting_date + timedelta(days=1)
    assert {i["status"] for i in items} == {"pending"}
    summaries = await enriching.store.aquery(
        f"""SELECT summary_type, text FROM {db}.summaries FINAL WHERE meeting_id = {{m:String}} AND run = {{r:String}}""",
        {"m": meeting.meeting_id, "r": row["run"]},
    )
    by_type = {s["summary_type"]: s["text"] for s in summaries}
    assert by_type["brief"].startswith("- ") and "release notes" in by_type["detailed"].lower()

    events = await _insight_events(enriching.settings, meeting.meeting_id)
    results = [e for e in events if isinstance(e, MeetingInsightsV1)]
    assert any(not r.final for r in results), "rolling results come while the meeting goes on"
    final = next(r for r in results if r.trigger == "ended")
    chunks = [e for e in events if isinstance(e, SummaryChunkV1) and e.enrichment_id == final.enrichment_id]
    first = {}  # a job run again (at least once) sends its chunks again, the same ones
    for chunk in chunks:
        assert first.setdefault(chunk.seq, chunk.text) == chunk.text
    assert len(first) >= 2, "the detailed summary arrives in several chunks"
    assert sorted(first) == list(range(len(first)))
    assert "".join(first[s] for s in sorted(first)) == final.summary_detailed == by_type["detailed"]
    assert events.index(chunks[0]) < events.index(final)


async def test_a_meeting_whose_clients_vanish_is_enriched_when_idle(enriching: Pipeline, tracks: dict[str, Any]) -> None:
    meeting = await _stream_meeting(enriching, tracks, "abrupt end")
    # Nobody ends it: the streams just close. PALAVER_MEETING_IDLE_S later, enrichment runs by itself.
    row = await _final_row(enriching, meeting.meeting_id, "idle")
    assert row["transcript_revision"] == len(SCRIPT)
    items = await enriching.store.aquery(
        f"""SELECT description FROM {enriching.store.database}.action_items FINAL
            WHERE meeting_id = {{m:String}} AND revision = {{v:UInt64}}""",
        {"m": meeting.meeting_id, "v": row["revision"]},
    )
    assert len(items) == 3
    # It stays done: no second idle result of the same transcript.
    await asyncio.sleep(IDLE_S + 2)
    events = await _insight_events(enriching.settings, meeting.meeting_id)
    finals = {e.enrichment_id for e in events if isinstance(e, MeetingInsightsV1) and e.final}
    assert len(finals) == 1



def _dialogue(meeting_id: str, speaker_id: str, start_ms: int, text: str) -> DialogueUpdateV1:
    utterance = ids.utterance_id(ids.stream_id(meeting_id, speaker_id), start_ms * 16)
    dialogue_id = ids.dialogue_id(meeting_id, utterance)
    return DialogueUpdateV1(event_id=ids.event_id("dialogue.update", dialogue_id, RUN, 1), dialogue_id=dialogue_id,
                            meeting_id=meeting_id, speaker_id=speaker_id, run=RUN, start_ms=start_ms,
                            end_ms=start_ms + 3000, text=text, status="final", revision=1, position=start_ms // 5000,
                            utterance_ids=[utterance])  # fmt: skip


async def test_autocorrect_writes_machine_edits_a_human_edit_always_overrides(enriching: Pipeline) -> None:
    people = {name: await register(enriching.url, name) for name in ("dave", "erin")}
    meeting = await meeting_with(people, title="Kubernetes rollout")
    m, dave, erin = meeting.meeting_id, people["dave"].user_id, people["erin"].user_id
    sloppy = _dialogue(m, dave, 0, "so i think the the kubernetes rollout works , erin")
    mine = _dialogue(m, erin, 5000, "i wrote this one myself")
    mark = MeetingWatermarkV1(event_id=ids.event_id("meeting.watermark", m, RUN, 9000), meeting_id=m, run=RUN,
                              watermark_ms=9000, final_dialogues=2)  # fmt: skip
    await publish_dialogues(enriching.settings, sloppy, mine, mark)
    async with people["dave"].client() as http:

        async def texts() -> dict[str, str]:
            body = (await http.get(f"/v1/meetings/{m}/dialogues")).json()
            return {d["dialogue_id"]: d["text"] for d in body["dialogues"]}

        await poll(texts, lambda t: len(t) == 2, what="the two dialogues stored")
        edited = await http.put(f"/v1/meetings/{m}/dialogues/{mine.dialogue_id}", json={"text": "Erin's own words"})
        assert edited.status_code == 202, edited.text
        await poll(texts, lambda t: t[mine.dialogue_id] == "Erin's own words", what="the human edit")
        asked = await http.post(f"/v1/meetings/{m}/autocorrect")
        assert asked.status_code == 202 and asked.json()["dialogue_id"] is None, asked.text
        corrected = "So I think the Kubernetes rollout works, Erin."
        shown = await poll(texts, lambda t: t[sloppy.dialogue_id] == corrected, what="the auto-correction")
        assert shown[mine.dialogue_id] == "Erin's own words"  # a human's text is never auto-corrected
        history = (await http.get(f"/v1/meetings/{m}/dialogues/{sloppy.dialogue_id}/history")).json()
        assert [(e["editor"], e["text"]) for e in history["edits"]] == [("palaver:autocorrect", corrected)]
        # A human edit after it wins, and asking again changes nothing of that dialogue.
        await http.put(f"/v1/meetings/{m}/dialogues/{sloppy.dialogue_id}", json={"text": "Dave's version"})
        await poll(texts, lambda t: t[sloppy.dialogue_id] == "Dave's version", what="the human edit over the machine's")
        again = await http.post(f"/v1/meetings/{m}/dialogues/{sloppy.dialogue_id}/autocorrect")
        assert again.status_code == 202
        missing = await http.post(f"/v1/meetings/{m}/dialogues/dlg_nothing/autocorrect")
        assert missing.status_code == 404
        await asyncio.sleep(3)
        assert (await texts())[sloppy.dialogue_id] == "Dave's version"
        history = (await http.get(f"/v1/meetings/{m}/dialogues/{sloppy.dialogue_id}/history")).json()
        assert [e["editor"] for e in history["edits"]] == ["palaver:autocorrect", dave]


async def test_a_remote_backend_failing_mid_summary_leaves_a_complete_local_result(
        enriching: Pipeline, model_server: FakeModelServer) -> None:  # fmt: skip
    people = {name: await register(enriching.url, name) for name in ("fay", "gus")}
    meeting = await meeting_with(people, title="remote failure")
    m, fay, gus = meeting.meeting_id, people["fay"].user_id, people["gus"].user_id
    lines = [_dialogue(m, fay, 0, "Gus, can you fix the flaky checkout test by Friday?"),
             _dialogue(m, gus, 5000, "Sure, I will fix the flaky checkout test by Friday."),
             _dialogue(m, fay, 10000, "Great, then the release can go out next week.")]  # fmt: skip
    mark = MeetingWatermarkV1(event_id=ids.event_id("meeting.watermark", m, RUN, 14000), meeting_id=m, run=RUN,
                              watermark_ms=14000, final_dialogues=3)  # fmt: skip
    await publish_dialogues(enriching.settings, *lines, mark)
    await poll(lambda: enriching.store.aquery(
        f"SELECT count() AS n FROM {enriching.store.database}.dialogues FINAL WHERE meeting_id = {{m:String}}",
        {"m": m}), lambda rows: rows[0]["n"] == 3, what="the dialogues stored")  # fmt: skip
    # The endpoint answers the extraction, then breaks its summary stream after two pieces.
    model_server.script = [Step(), Step(pieces=SUMMARY_PIECES[:2], finish=False)]
    async with people["fay"].client() as http:
        asked = await http.post(f"/v1/meetings/{m}/enrichment", json={"backend": "openai"})
        assert asked.status_code == 202, asked.text
    row = await _final_row(enriching, m, "requested")
    assert row["backend"] == "openai" and row["run"] == f"{RUN}/openai"
    fallback = orjson.loads(row["fallback"])
    assert fallback["backend"] == "openai" and "before the answer was finished" in fallback["reason"]
    items = await enriching.store.aquery(
        f"""SELECT description, assigned_to FROM {enriching.store.database}.action_items FINAL
            WHERE meeting_id = {{m:String}} AND run = {{r:String}} AND revision = {{v:UInt64}}""",
        {"m": m, "r": row["run"], "v": row["revision"]},
    )  # fmt: skip
    assert [(i["assigned_to"], "checkout test" in i["description"].lower()) for i in items] == [("gus", True)]

    events = await _insight_events(enriching.settings, m)
    final = next(e for e in events if isinstance(e, MeetingInsightsV1) and e.trigger == "requested")
    chunks = [e for e in events if isinstance(e, SummaryChunkV1) and e.enrichment_id == final.enrichment_id]
    assert [c.text for c in chunks[:2]] == SUMMARY_PIECES[:2] and not chunks[0].reset
    restart = next(i for i, c in enumerate(chunks) if c.reset)
    assert restart == 2
    assert "".join(c.text for c in chunks[restart:]) == final.summary_detailed  # local's, whole

    async with httpx.AsyncClient(base_url=enriching.url) as http:
        metrics = (await http.get("/metrics/")).text
    assert 'palaver_enrichment_fallbacks_total{backend="openai"} 1.0' in metrics
    assert 'palaver_enrichment_jobs_total{outcome="fallback",trigger="requested"} 1.0' in metrics


async def _progress_record(settings: Settings, meeting_id: str) -> tuple[bool, bytes | None]:
    """(whether the meeting has a record, its newest value: None for a tombstone) on enrichment.state."""
    tp = TopicPartition(topic_name(settings.topic_namespace, ENRICHMENT_STATE.name),
                        meeting_partition(meeting_id, ENRICHMENT_STATE.partitions))  # fmt: skip
    consumer = make_consumer(settings, None)
    await consumer.start()
    found: tuple[bool, bytes | None] = (False, None)
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                if record.key == meeting_id.encode():
                    found = (True, record.value)
    finally:
        await consumer.stop()
    return found


async def test_progress_is_forgotten_when_done_and_a_later_remote_autocorrect_is_still_served(
        enriching: Pipeline, model_server: FakeModelServer) -> None:  # fmt: skip
    people = {name: await register(enriching.url, name) for name in ("omar", "nina")}
    meeting = await meeting_with(people, title="Quarterly roadmap")
    m, omar, nina = meeting.meeting_id, people["omar"].user_id, people["nina"].user_id
    late = _dialogue(m, omar, 0, "we was going to ship the roadmap friday")
    agreed = _dialogue(m, nina, 5000, "ok omar lets do it")
    mark = MeetingWatermarkV1(event_id=ids.event_id("meeting.watermark", m, RUN, 9000), meeting_id=m, run=RUN,
                              watermark_ms=9000, final_dialogues=2)  # fmt: skip
    await publish_dialogues(enriching.settings, late, agreed, mark)
    await _final_row(enriching, m, "idle")
    # Its final result delivered and idle past the retention: its progress becomes a tombstone.
    await poll(lambda: _progress_record(enriching.settings, m), lambda found: found == (True, None),
               what="the meeting's progress tombstoned", timeout_s=120)  # fmt: skip

    # A later request finds no progress; the service reads the run from the store and serves it. The model
    # fixes the first dialogue and rewrites the second, which its guard rejects: the local rules fix that one.
    fixed = "We were going to ship the roadmap on Friday."
    model_server.script = [Step(content=orjson.dumps({late.dialogue_id: fixed,
                                                      agreed.dialogue_id: "Let us rewrite the whole plan, Omar."}).decode())]  # fmt: skip
    async with people["nina"].client() as http:
        asked = await http.post(f"/v1/meetings/{m}/autocorrect", json={"backend": "openai"})
        assert asked.status_code == 202 and asked.json()["backend"] == "openai", asked.text
        unknown = await http.post(f"/v1/meetings/{m}/autocorrect", json={"backend": "gpt"})
        assert unknown.status_code == 422 and "choose one of" in unknown.text

        async def texts() -> dict[str, str]:
            body = (await http.get(f"/v1/meetings/{m}/dialogues")).json()
            return {d["dialogue_id"]: d["text"] for d in body["dialogues"]}

        shown = await poll(texts, lambda t: t[late.dialogue_id] == fixed, what="the model's correction", timeout_s=60)
        assert shown[agreed.dialogue_id] == "Ok Omar lets do it."  # the local correction, not the rewrite
        history = (await http.get(f"/v1/meetings/{m}/dialogues/{agreed.dialogue_id}/history")).json()
        assert [(e["editor"], e["text"]) for e in history["edits"]] == [("palaver:autocorrect", "Ok Omar lets do it.")]
    [request] = [r for r in model_server.chat_requests()
                 if r.body.get("response_format", {}).get("json_schema", {}).get("name") == "dialogue_corrections"]  # fmt: skip
    prompt = request.body["messages"][1]["content"]
    assert "Meeting title: Quarterly roadmap" in prompt and "Participants: " in prompt and "omar" in prompt
    async with httpx.AsyncClient(base_url=enriching.url) as http:
        metrics = (await http.get("/metrics/")).text
    for outcome in ("remote", "rejected"):
        assert f'palaver_enrichment_autocorrections_total{{backend="openai",outcome="{outcome}"}} 1.0' in metrics

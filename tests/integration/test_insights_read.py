"""Enrichment's results as people read them, on the real API, broker and store: ``GET .../summary``,
``.../insights``, ``.../insights/runs`` and ``.../action-items`` (the items of the newest revision of a run,
human edits kept across revisions), ``?run=``, 404 before any result, ``POST .../enrichment`` publishing a
request (422 on an unknown backend, Idempotency-Key), and the live socket's ``summary`` chunks and
``insights`` message.

Results are published as the enrichment service publishes them (no STT, merger or enrichment service here):
a real ``LocalBackend`` result made into its events by ``enrichment.insights``. What is under test is the way
from the insights topic to the reader."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from enrichment.insights import chunk_event, insights_event
from enrichment.local import LocalBackend
from enrichment.model import Dialogue, Enrichment, MeetingTranscript
from palaver.demo.accounts import Meeting
from palaver.events import decode_on, encode
from palaver.events.base import EventV
from palaver.events.insights_v1 import EnrichmentRequestedV1, Trigger
from palaver.events.registry import ENRICHMENT_REQUESTS, INSIGHTS, topic_name
from palaver.settings import Settings
from palaver.streams.clients import make_consumer, make_producer
from tests.integration.conftest import Web, poll, running_web
from tests.integration.infra import Infra
from tests.integration.meetings import live_socket, open_meeting
from tests.integration.test_live_socket import of_type, until

pytestmark = pytest.mark.integration

TRANSCRIPT_RUN = "whisper:tiny.en"
RUN = f"{TRANSCRIPT_RUN}/local"


@pytest.fixture(scope="module")
async def web(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Web]:
    """API and store writer in this process on fresh topics and a fresh database."""
    async with running_web(infra, clickhouse_client, tmp_path_factory) as found:
        yield found


def standup(meeting: Meeting) -> tuple[MeetingTranscript, dict[str, str]]:
    """A short meeting of ann and bob with two tasks, said in two different dialogues."""
    ann, bob = meeting.people["ann"], meeting.people["bob"]
    turns = [(ann.username, "Morning. The release is blocked on the flaky checkout test."),
             (bob.username, "I'll fix the flaky checkout test by Friday."),
             (ann.username, "Great. I will write the release notes tomorrow."),
             (bob.username, "Thanks, that sounds good.")]  # fmt: skip
    dialogues = tuple(Dialogue(dialogue_id=f"dlg_{meeting.meeting_id[-8:]}{i}", speaker=speaker, start_ms=i * 6000,
                               end_ms=i * 6000 + 5000, text=text) for i, (speaker, text) in enumerate(turns))  # fmt: skip
    transcript = MeetingTranscript(dialogues=dialogues, participants=(ann.username, bob.username))
    return transcript, {ann.username: ann.user_id, bob.username: bob.user_id}


def result_event(meeting: Meeting, result: Enrichment, trigger: Trigger, placed: int,
                 transcript_run: str = TRANSCRIPT_RUN, user_ids: dict[str, str] | None = None) -> EventV:  # fmt: skip
    return insights_event(meeting.meeting_id, transcript_run, "local", trigger, placed, result, user_ids or {},
                          int(time.time() * 1000))  # fmt: skip


async def publish(settings: Settings, *events: EventV) -> None:
    """Events on the insights topic, keyed by meeting, as the enrichment service publishes them."""
    producer = make_producer(settings)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(topic_name(settings.topic_namespace, INSIGHTS.name), encode(event),
                                         key=event.meeting_id.encode())  # type: ignore[attr-defined]  # fmt: skip
    finally:
        await producer.stop()


async def requests_of(settings: Settings, meeting_id: str) -> list[EnrichmentRequestedV1]:
    """The meeting's requests on the enrichment.requests topic so far."""
    consumer = make_consumer(settings, None, topic_name(settings.topic_namespace, ENRICHMENT_REQUESTS.name))
    await consumer.start()
    try:
        out: list[EnrichmentRequestedV1] = []
        while batches := await consumer.getmany(timeout_ms=1000):
            for records in batches.values():
                for record in records:
                    event = decode_on(ENRICHMENT_REQUESTS, record.value)
                    if isinstance(event, EnrichmentRequestedV1) and event.meeting_id == meeting_id:
                        out.append(event)
        return out
    finally:
        await consumer.stop()


async def get(person: Any, path: str, **params: str) -> Any:
    async with person.client() as http:
        return await http.get(path, params=params)


async def test_summary_insights_and_the_newest_revisions_action_items(web: Web) -> None:
    meeting = await open_meeting(web.url, ["ann", "bob"])
    m, ann = meeting.meeting_id, meeting.people["ann"]
    transcript, user_ids = standup(meeting)
    result = LocalBackend().enrich(transcript)
    assert len(result.action_items) >= 2, result.action_items
    rolling = result_event(meeting, result, "rolling", 3, user_ids=user_ids)
    await publish(web.settings, rolling)

    summary = (await poll(lambda: get(ann, f"/v1/meetings/{m}/summary"), lambda r: r.status_code == 200,
                          "the summary")).json()  # fmt: skip
    assert {k: summary[k] for k in ("run", "backend", "trigger", "final", "revision", "transcript_revision",
                                    "brief", "detailed", "fallback", "enrichment_id")} == {
        "run": RUN, "backend": "local", "trigger": "rolling", "final": False, "revision": 6, "transcript_revision": 3,
        "brief": result.summary.brief, "detailed": result.summary.detailed, "fallback": None,
        "enrichment_id": rolling.enrichment_id}  # type: ignore[attr-defined]  # fmt: skip

    insights = (await get(ann, f"/v1/meetings/{m}/insights")).json()
    expected = result.to_json()
    assert insights["summary"] == {"brief": result.summary.brief, "detailed": result.summary.detailed}
    assert (insights["keywords"], insights["mood"], insights["agenda"], insights["metrics"]) == (
        expected["keywords"], expected["mood"], expected["agenda"], expected["metrics"])
    assert insights["action_item_count"] == len(result.action_items) and insights["run"] == RUN

    items = (await poll(lambda: get(ann, f"/v1/meetings/{m}/action-items"),
                        lambda r: len(r.json()) == len(result.action_items), "the action items")).json()  # fmt: skip
    by_description = {i["description"]: i for i in items}
    first, dropped = result.action_items[0], result.action_items[1]
    kept = by_description[first.description]
    assert (kept["assigned_to"], kept["assignee_id"], kept["dialogue_ids"], kept["revision"], kept["run"]) == (
        first.assignee, user_ids.get(first.assignee, ""), list(first.dialogue_ids), 6, RUN)

    async with ann.client() as http:
        edited = await http.patch(f"/v1/meetings/{m}/action-items/{kept['action_item_id']}", json={"status": "done"})
    assert edited.status_code == 202, edited.text
    await poll(lambda: get(ann, f"/v1/meetings/{m}/action-items"),
               lambda r: {i["action_item_id"]: i["status"] for i in r.json()}.get(kept["action_item_id"]) == "done",
               "the edit")  # fmt: skip

    # The meeting ends; its final result no longer lists the second task.
    final = result_event(meeting, result.model_copy(update={"action_items": (first,)}), "ended", 4, user_ids=user_ids)
    await publish(web.settings, final)
    items = (await poll(lambda: get(ann, f"/v1/meetings/{m}/action-items"),
                        lambda r: [i["revision"] for i in r.json()] == [9], "the final result's items")).json()  # fmt: skip
    assert [(i["action_item_id"], i["status"], i["edited"]) for i in items] == [(kept["action_item_id"], "done", True)]
    assert dropped.description not in {i["description"] for i in items}
    summary = (await get(ann, f"/v1/meetings/{m}/summary")).json()
    assert (summary["trigger"], summary["final"], summary["revision"]) == ("ended", True, 9)
    assert (await get(ann, f"/v1/meetings/{m}/insights")).json()["action_item_count"] == 1

    # A redelivered older result changes nothing.
    await publish(web.settings, rolling)
    runs = (await poll(lambda: get(ann, f"/v1/meetings/{m}/insights/runs"), lambda r: r.json()["runs"],
                       "the runs")).json()["runs"]  # fmt: skip
    assert [(r["run"], r["revision"], r["default"], r["live"]) for r in runs] == [(RUN, 9, True, True)]


async def test_runs_lie_beside_each_other_and_run_picks_one(web: Web) -> None:
    meeting = await open_meeting(web.url, ["ann", "bob"])
    m, bob = meeting.meeting_id, meeting.people["bob"]
    transcript, user_ids = standup(meeting)
    result = LocalBackend().enrich(transcript)
    live = result_event(meeting, result, "ended", 4, user_ids=user_ids)
    replay_run = f"{TRANSCRIPT_RUN}~replay"
    replay = result_event(meeting, result.model_copy(update={"action_items": ()}), "requested", 2,
                          transcript_run=replay_run)  # fmt: skip
    await publish(web.settings, live, replay)  # the replay's is newer, but a replay never takes the view over

    runs = (await poll(lambda: get(bob, f"/v1/meetings/{m}/insights/runs"), lambda r: len(r.json()["runs"]) == 2,
                       "both runs")).json()["runs"]  # fmt: skip
    assert [(r["run"], r["default"], r["live"]) for r in runs] == [(RUN, True, True), (f"{replay_run}/local", False, False)]
    assert (await get(bob, f"/v1/meetings/{m}/summary")).json()["run"] == RUN
    picked = (await get(bob, f"/v1/meetings/{m}/summary", run=f"{replay_run}/local")).json()
    assert (picked["run"], picked["revision"], picked["trigger"]) == (f"{replay_run}/local", 5, "requested")
    assert (await get(bob, f"/v1/meetings/{m}/insights", run=f"{replay_run}/local")).json()["action_item_count"] == 0
    await poll(lambda: get(bob, f"/v1/meetings/{m}/action-items"), lambda r: len(r.json()) == len(result.action_items),
               "the live run's items")  # fmt: skip
    assert (await get(bob, f"/v1/meetings/{m}/action-items", run=f"{replay_run}/local")).json() == []

    # Another live transcript run's result, newer: it is the default now.
    other = result_event(meeting, result, "requested", 1, transcript_run="deepgram:nova-3", user_ids=user_ids)
    await publish(web.settings, other)
    await poll(lambda: get(bob, f"/v1/meetings/{m}/summary"), lambda r: r.json()["run"] == "deepgram:nova-3/local",
               "the newer live run is the default")  # fmt: skip

    unknown = await get(bob, f"/v1/meetings/{m}/summary", run="whisper:tiny.en/gpt")
    assert unknown.status_code == 404 and unknown.json() == {
        "detail": f"meeting {m} has no summary of run whisper:tiny.en/gpt yet"}


async def test_a_meeting_without_a_result_says_so(web: Web) -> None:
    meeting = await open_meeting(web.url, ["ann"])
    m, ann = meeting.meeting_id, meeting.people["ann"]
    for route, what in (("summary", "summary"), ("insights", "insights")):
        answer = await get(ann, f"/v1/meetings/{m}/{route}")
        assert (answer.status_code, answer.json()) == (404, {"detail": f"meeting {m} has no {what} yet"})
    assert (await get(ann, f"/v1/meetings/{m}/action-items")).json() == []
    assert (await get(ann, f"/v1/meetings/{m}/insights/runs")).json() == {"meeting_id": m, "runs": []}


async def test_asking_for_an_enrichment_publishes_a_request(web: Web) -> None:
    meeting = await open_meeting(web.url, ["ann", "bob"])
    m, ann, bob = meeting.meeting_id, meeting.people["ann"], meeting.people["bob"]
    async with bob.client() as http:
        plain = await http.post(f"/v1/meetings/{m}/enrichment")
        named = await http.post(f"/v1/meetings/{m}/enrichment", json={"backend": "local"},
                                headers={"Idempotency-Key": "summarize-1"})  # fmt: skip
        again = await http.post(f"/v1/meetings/{m}/enrichment", json={"backend": "local"},
                                headers={"Idempotency-Key": "summarize-1"})  # fmt: skip
        unknown = await http.post(f"/v1/meetings/{m}/enrichment", json={"backend": "gpt"})
    assert (plain.status_code, named.status_code, again.status_code) == (202, 202, 202), (plain.text, named.text)
    assert plain.json()["backend"] == web.settings.enrichment_backend and named.json() == again.json()
    assert unknown.status_code == 422 and "choose one of local" in unknown.text
    async with ann.client() as http:  # the same key, another person: another request
        taken = await http.post(f"/v1/meetings/{m}/enrichment", headers={"Idempotency-Key": "summarize-1"})
    assert taken.status_code == 409 and "summarize-1" in taken.json()["detail"]

    requests = await requests_of(web.settings, m)
    assert sorted(r.event_id for r in requests) == sorted([plain.json()["request_id"], named.json()["request_id"]])
    for request in requests:
        assert (request.reason, request.requested_by) == ("requested", bob.user_id)
    assert {r.event_id: r.backend for r in requests}[named.json()["request_id"]] == "local"


async def test_a_live_socket_gets_the_summary_as_it_is_written_then_the_result(web: Web) -> None:
    meeting = await open_meeting(web.url, ["ann", "bob"])
    m = meeting.meeting_id
    transcript, user_ids = standup(meeting)
    result = LocalBackend().enrich(transcript)
    pieces: list[str] = []
    LocalBackend().enrich(transcript, pieces.append)
    assert len(pieces) >= 2 and "".join(pieces) == result.summary.detailed
    event = result_event(meeting, result, "rolling", 4, user_ids=user_ids)
    enrichment_id = event.enrichment_id  # type: ignore[attr-defined]
    chunks = [chunk_event(m, RUN, enrichment_id, seq, piece) for seq, piece in enumerate(pieces)]
    async with live_socket(web.url, meeting, "bob") as ws:
        await publish(web.settings, *chunks, event)
        got = await until(ws, lambda msg: msg["type"] == "insights", "the result")
    summary = of_type(got, "summary")
    assert [(s["seq"], s["text"], s["enrichment_id"], s["run"], s["reset"]) for s in summary] == [
        (i, piece, enrichment_id, RUN, False) for i, piece in enumerate(pieces)]
    insights = got[-1]
    assert (insights["enrichment_id"], insights["run"], insights["revision"], insights["summary_detailed"]) == (
        enrichment_id, RUN, 8, result.summary.detailed)
    assert [i["description"] for i in insights["action_items"]] == [i.description for i in result.action_items]

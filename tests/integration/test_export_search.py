"""Exports and search on the real app, broker and store: a meeting's final dialogues (published as the
merger publishes them) download as Markdown, JSON, SRT and WebVTT with the right headers; search finds the
caller's dialogues, ranked, with snippets and review links, and nothing of anyone else's meetings or of a
deleted one; a human edit shows in both."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from itertools import pairwise
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest

from palaver import ids
from palaver.demo.accounts import Participant, create_meeting, invite, sign_up
from palaver.events import DialogueUpdateV1
from tests.integration.conftest import Web, poll, running_web
from tests.integration.infra import Infra
from tests.integration.meetings import publish_dialogues

pytestmark = pytest.mark.integration

RUN = "whisper:tiny.en"
TITLE = "Q3 Plan: Zürich"
OPENING = "Welcome everyone. Today we look at the budget for the third quarter."
LONG = ("Thanks. I went through the numbers last night and the quarter budget looks tighter than we hoped, "
        "mostly because the travel line grew by a third while sales in the north only held steady. "
        "If we cut the conference trips we are back on plan, and nobody has to give up the new laptops. "
        "I would like a decision on that before Friday, so that finance can close the books on time.")  # fmt: skip
LATE = "One more thing about the budget & <numbers> --> later."
LIVE = "and the quarter budget is still being"


@dataclass
class World:
    web: Web
    people: dict[str, Participant]  # ana owns the meeting, bo takes part, cy views, eve spoke and left us
    meeting_id: str
    dialogue_ids: dict[str, str]  # opening, long, late, eve, live


def _dialogue(meeting_id: str, speaker_id: str, start_ms: int, end_ms: int, text: str,
              status: str = "final") -> DialogueUpdateV1:  # fmt: skip
    utterance = ids.utterance_id(ids.stream_id(meeting_id, speaker_id), start_ms * 16)
    dialogue_id = ids.dialogue_id(meeting_id, utterance)
    return DialogueUpdateV1(
        event_id=ids.event_id("dialogue.update", dialogue_id, RUN, 1), dialogue_id=dialogue_id, meeting_id=meeting_id,
        speaker_id=speaker_id, run=RUN, start_ms=start_ms, end_ms=end_ms, text=text, status=status, revision=1,
        position=0, utterance_ids=[utterance],
    )  # fmt: skip


async def _meeting_with_dialogues(web: Web, owner: Participant, title: str,
                                  dialogues: list[DialogueUpdateV1]) -> None:  # fmt: skip
    await publish_dialogues(web.settings, *dialogues)
    async with owner.client() as http:
        await poll(lambda: http.get(f"/v1/meetings/{dialogues[0].meeting_id}/dialogues"),
                   lambda r: len(r.json()["dialogues"]) == len(dialogues), f"the dialogues of {title}", 60)  # fmt: skip


@pytest.fixture(scope="module")
async def world(infra: Infra, clickhouse_client: object,
                tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:  # fmt: skip
    tag = uuid.uuid4().hex[:6]
    async with running_web(infra, clickhouse_client, tmp_path_factory) as web:
        people = {who: await sign_up(web.url, f"{who}-{tag}") for who in ("ana", "bo", "cy", "eve", "dee")}
        meeting_id = await create_meeting(people["ana"], TITLE)
        await invite(people["ana"], meeting_id, people["bo"])
        await invite(people["ana"], meeting_id, people["cy"], role="viewer")
        await invite(people["ana"], meeting_id, people["eve"])
        ana, bo, eve = (people[p].user_id for p in ("ana", "bo", "eve"))
        events = {
            "opening": _dialogue(meeting_id, ana, 0, 4_000, OPENING),
            "long": _dialogue(meeting_id, bo, 4_000, 34_000, LONG),
            "eve": _dialogue(meeting_id, eve, 40_000, 41_000, "Sounds good to me."),
            "late": _dialogue(meeting_id, ana, 3_700_000, 3_705_000, LATE),
            "live": _dialogue(meeting_id, bo, 3_706_000, 3_707_000, LIVE, status="live"),
        }
        await _meeting_with_dialogues(web, people["ana"], TITLE, list(events.values()))
        # Eve deletes her account: her words stay, her name goes (another may take it).
        async with people["eve"].client() as http:
            assert (await http.delete(f"/v1/users/{eve}")).status_code == 204
        yield World(web, people, meeting_id, {k: e.dialogue_id for k, e in events.items()})


async def _export(world: World, who: str, fmt: str, **params: Any) -> httpx.Response:
    async with world.people[who].client() as http:
        return await http.get(f"/v1/meetings/{world.meeting_id}/export", params={"format": fmt, **params})


async def _search(world: World, who: str, q: str, **params: Any) -> httpx.Response:
    async with world.people[who].client() as http:
        return await http.get("/v1/search", params={"q": q, **params})


def _names(world: World) -> dict[str, str]:
    return {who: p.username for who, p in world.people.items()}


def _attachment(answer: httpx.Response, extension: str) -> None:
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith(f'attachment; filename="Q3 Plan Zurich.{extension}"; '), disposition
    assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == f"Q3 Plan Zürich.{extension}"


def _cues(body: str, separator: str) -> list[tuple[str, str, list[str]]]:
    """(start, end, text lines) of each cue of an SRT or WebVTT body, checking each block's shape."""
    found = []
    for block in body.strip("\n").split("\n\n"):
        lines = block.split("\n")
        if lines == ["WEBVTT"]:
            continue
        assert lines[0].isdigit(), block
        timing = re.fullmatch(rf"(\d\d+:\d\d:\d\d{separator}\d\d\d) --> (\d\d+:\d\d:\d\d{separator}\d\d\d)", lines[1])
        assert timing, block
        assert all("-->" not in line for line in lines[2:]) and 1 <= len(lines[2:]) <= 2, block
        found.append((timing[1], timing[2], lines[2:]))
    assert [int(b.split("\n")[0]) for b in body.strip("\n").split("\n\n") if b[0].isdigit()] == \
        list(range(1, len(found) + 1)), "cues numbered 1, 2, ..."
    return found


async def test_markdown_export(world: World) -> None:
    names = _names(world)
    answer = await _export(world, "cy", "markdown")  # a viewer reads
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/markdown; charset=utf-8"
    _attachment(answer, "md")
    body = answer.text
    eve_id = world.people["eve"].user_id
    assert body.startswith(f"# {TITLE}\n\n- Date: "), body
    assert f"- Participants: {names['ana']}, {names['bo']}, {names['cy']}, {eve_id}\n" in body, \
        "the meeting's people, then a deleted speaker by id"  # fmt: skip
    assert "_Not included: 1 dialogue still being transcribed._" in body
    paragraphs = [p for p in body.rstrip("\n").split("\n\n") if p.startswith("**")]
    assert paragraphs == [
        f"**{names['ana']}** (00:00): {OPENING}",
        f"**{names['bo']}** (00:04): {LONG}",
        f"**{eve_id}** (00:40): Sounds good to me.",
        f"**{names['ana']}** (1:01:40): One more thing about the budget & \\<numbers\\> --\\> later.",
    ]
    assert LIVE not in body


async def test_json_export(world: World) -> None:
    answer = await _export(world, "bo", "json")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    _attachment(answer, "json")
    found = orjson.loads(answer.content)
    assert found["meeting"]["meeting_id"] == world.meeting_id and found["meeting"]["title"] == TITLE
    assert found["meeting"]["owner_id"] == world.people["ana"].user_id
    assert found["run"] == RUN and found["live_dialogues_left_out"] == 1
    d = world.dialogue_ids
    assert [x["dialogue_id"] for x in found["dialogues"]] == [d["opening"], d["long"], d["eve"], d["late"]]
    first = found["dialogues"][0]
    assert first == {"dialogue_id": d["opening"], "speaker_id": world.people["ana"].user_id,
                     "speaker_name": world.people["ana"].username, "start_ms": 0, "end_ms": 4_000,
                     "text": OPENING, "edited": False}  # fmt: skip


async def test_srt_export(world: World) -> None:
    names = _names(world)
    answer = await _export(world, "ana", "srt")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-subrip"
    _attachment(answer, "srt")
    cues = _cues(answer.text, ",")
    named = [c for c in cues if not c[2][0].startswith(world.people["eve"].user_id)]
    assert len(named) == len(cues) - 1, "Eve's words are there, under her id"
    # A name takes up to half of its cue's first line (Eve's id, 28 characters, takes 21).
    assert all(len(line) <= 42 for c in named for line in c[2]), "lines of 42 characters at most, name included"
    assert cues[0][:2] == ("00:00:00,000", "00:00:04,000")
    assert " ".join(cues[0][2]) == f"{names['ana']}: {OPENING}"
    long_cues = [c for c in cues if c[2][0].startswith(f"{names['bo']}: ")]
    assert len(long_cues) > 3, "a long dialogue is cut into readable cues"
    assert " ".join(" ".join(c[2])[len(names["bo"]) + 2 :] for c in long_cues) == LONG
    assert long_cues[0][0] == "00:00:04,000" and long_cues[-1][1] == "00:00:34,000"
    for earlier, later in pairwise(long_cues):
        assert earlier[1] == later[0], "a dialogue's cues follow each other without overlapping"
    assert cues[-1][:2] == ("01:01:40,000", "01:01:45,000")
    assert " ".join(cues[-1][2]) == f"{names['ana']}: One more thing about the budget & <numbers> -> later."
    assert LIVE not in answer.text


async def test_vtt_export(world: World) -> None:
    names = _names(world)
    answer = await _export(world, "ana", "vtt")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/vtt; charset=utf-8"
    _attachment(answer, "vtt")
    assert answer.text.startswith("WEBVTT\n\n1\n00:00:00.000 --> 00:00:04.000\n")
    cues = _cues(answer.text, r"\.")
    assert [c[0] for c in cues] == sorted(c[0] for c in cues), "cues in order of start"
    voices = [re.match(r"<v ([^>]+)>", c[2][0])[1] for c in cues]  # type: ignore[index]
    assert set(voices) == {names["ana"], names["bo"], world.people["eve"].user_id}
    assert cues[-1][:2] == ("01:01:40.000", "01:01:45.000")
    assert " ".join(cues[-1][2]) == (f"<v {names['ana']}>One more thing about the budget &amp; &lt;numbers&gt; "
                                     "--&gt; later.")  # fmt: skip


async def test_export_access_and_bad_input(world: World) -> None:
    assert (await _export(world, "dee", "markdown")).status_code == 404, "a stranger does not learn it exists"
    async with httpx.AsyncClient(base_url=world.web.url) as anonymous:
        assert (await anonymous.get(f"/v1/meetings/{world.meeting_id}/export?format=json")).status_code == 401
    for bad in ("pdf", "MARKDOWN", ""):
        assert (await _export(world, "ana", bad)).status_code == 422, bad
    async with world.people["ana"].client() as http:
        assert (await http.get(f"/v1/meetings/{world.meeting_id}/export")).status_code == 422, "format is required"
    other_run = await _export(world, "ana", "markdown", run="deepgram:nova-3")
    assert other_run.status_code == 200 and other_run.text.endswith("_No final dialogues yet._\n")


async def test_search_ranks_the_callers_dialogues_with_snippets_and_links(world: World) -> None:
    # Dee's own meeting says the same words: only Dee finds it.
    dee = world.people["dee"]
    dees_meeting = await create_meeting(dee, "Dee's plans")
    dees = _dialogue(dees_meeting, dee.user_id, 0, 3_000, "Our quarter budget is fine.")
    await _meeting_with_dialogues(world.web, dee, "Dee's plans", [dees])

    answer = await _search(world, "bo", "  QUARTER\tbudget ")
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["words"] == ["QUARTER", "budget"] and found["limit"] == 20
    d = world.dialogue_ids
    # The words together count most; then the opening (both words apart); the live box is searched too.
    assert [r["dialogue_id"] for r in found["results"]] == [d["long"], d["live"], d["opening"]], found
    best = found["results"][0]
    assert best == {**best, "meeting_id": world.meeting_id, "meeting_title": TITLE,
                    "speaker_id": world.people["bo"].user_id, "speaker_name": world.people["bo"].username,
                    "start_ms": 4_000, "url": f"/meetings/{world.meeting_id}/review#d={d['long']}"}  # fmt: skip
    assert best["score"] == 1 + 1 + 10 and found["results"][2]["score"] == 2
    assert "the quarter budget looks tighter" in best["snippet"] and best["snippet"].endswith("…")
    assert len(best["snippet"]) <= 162 and best["snippet"].strip("…") in LONG
    assert found["results"][2]["snippet"] == OPENING

    theirs = (await _search(world, "dee", "quarter budget")).json()["results"]
    assert [r["dialogue_id"] for r in theirs] == [dees.dialogue_id], "a stranger finds nothing of Ana's meeting"
    assert (await _search(world, "cy", "quarter budget")).json()["results"][0]["dialogue_id"] == d["long"], \
        "a viewer searches the meetings it views"  # fmt: skip
    assert [r["speaker_name"] for r in (await _search(world, "ana", "sounds good")).json()["results"]] == \
        [world.people["eve"].user_id], "a deleted speaker by id"  # fmt: skip
    limited = (await _search(world, "ana", "budget", limit=1)).json()["results"]
    assert len(limited) == 1


async def test_search_input_is_data_and_is_checked(world: World) -> None:
    for q in ("'; DROP TABLE dialogues; --", "%_", "{q:String}", "\\", "<numbers>"):
        answer = await _search(world, "ana", q)
        assert answer.status_code == 200, (q, answer.text)
    assert [r["dialogue_id"] for r in (await _search(world, "ana", "<NUMBERS> -->")).json()["results"]] == \
        [world.dialogue_ids["late"]], "symbols are searched as written"  # fmt: skip
    assert (await _search(world, "ana", "'; DROP TABLE dialogues; --")).json()["results"] == []
    for q in ("", "   ", "\u00a0\t", "x" * 201):
        assert (await _search(world, "ana", q)).status_code == 422, repr(q)
    assert (await _search(world, "ana", "budget", limit=0)).status_code == 422
    assert (await _search(world, "ana", "budget", all="true")).status_code == 403, "all=true is for admins"
    async with httpx.AsyncClient(base_url=world.web.url) as anonymous:
        assert (await anonymous.get("/v1/search", params={"q": "budget"})).status_code == 401


async def test_an_edit_shows_in_export_and_search(world: World) -> None:
    late = world.dialogue_ids["late"]
    assert (await _search(world, "ana", "zebra")).json()["results"] == []
    async with world.people["bo"].client() as http:
        edited = await http.put(f"/v1/meetings/{world.meeting_id}/dialogues/{late}",
                                json={"text": "The zebra crossing budget is approved."})  # fmt: skip
        assert edited.status_code == 202, edited.text
    found = await poll(lambda: _search(world, "cy", "ZEBRA approved"), lambda r: r.json()["results"],
                       "the edit in search", 60)  # fmt: skip
    (hit,) = found.json()["results"]
    assert (hit["dialogue_id"], hit["snippet"]) == (late, "The zebra crossing budget is approved.")
    assert (await _search(world, "ana", "<numbers>")).json()["results"] == [], "the machine's text is not searched"
    exported = orjson.loads((await _export(world, "ana", "json")).content)
    (row,) = [x for x in exported["dialogues"] if x["dialogue_id"] == late]
    assert (row["text"], row["edited"]) == ("The zebra crossing budget is approved.", True)
    markdown = (await _export(world, "ana", "markdown")).text
    assert f"**{world.people['ana'].username}** (1:01:40): The zebra crossing budget is approved." in markdown
    vtt = (await _export(world, "ana", "vtt")).text
    assert "The zebra crossing budget is approved." in vtt and "&lt;numbers&gt;" not in vtt


async def test_a_deleted_meeting_is_never_found(world: World) -> None:
    ana = world.people["ana"]
    old = await create_meeting(ana, "Old plans")
    gone = _dialogue(old, ana.user_id, 0, 2_000, "The obsolete quarter budget from last year.")
    await _meeting_with_dialogues(world.web, ana, "Old plans", [gone])
    await poll(lambda: _search(world, "ana", "obsolete"), lambda r: r.json()["results"], "the old meeting found", 60)
    async with ana.client() as http:
        assert (await http.delete(f"/v1/meetings/{old}")).status_code == 204
    assert (await _search(world, "ana", "obsolete")).json()["results"] == []
    assert all(r["meeting_id"] != old for r in (await _search(world, "ana", "quarter budget")).json()["results"])

"""Pure logic of the remote backends: the transcript's lines and parts, the answers' validation, assignees,
topics and keywords; Retry-After and backoff; server-sent events; the detailed summary's sections."""

from __future__ import annotations

import json
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enrichment import answers, prompts
from enrichment.answers import Extraction, InvalidOutput, RawItem, RawTopic, Reduction
from enrichment.chunks import markdown_sections
from enrichment.http_calls import RemoteCallError, RetryPolicy, retry_after_s, server_sent_events
from enrichment.local import LocalBackend
from enrichment.prompts import Line
from tests.unit.enrichment_helpers import meeting
from tests.unit.llm_servers import good_extraction

PEOPLE = ("Ann Lee", "Bob Stone", "Bob Marley", "Carol")


def test_lines_are_numbered_turns_with_their_time_and_speaker() -> None:
    t = meeting("Ann: Hello   there.", "Bob: Hi.")
    lines = prompts.transcript_lines(t.dialogues, 1000)
    assert [(line.turn, line.text) for line in lines] == [(0, "#0 [0:00] Ann: Hello there."), (1, "#1 [0:01] Bob: Hi.")]


def test_a_turn_longer_than_a_part_is_cut_between_sentences_and_keeps_every_word() -> None:
    text = " ".join(f"Sentence {i} has a few words in it." for i in range(40)) + " " + "x" * 300
    t = meeting(f"Ann: {text}")
    lines = prompts.transcript_lines(t.dialogues, 200)
    assert len(lines) > 1 and all(len(line.text) <= 200 for line in lines)
    assert all(line.text.startswith("#0 [0:00] Ann: ") for line in lines)
    kept = "".join(line.text.removeprefix("#0 [0:00] Ann: ").replace(" ", "") for line in lines)
    assert kept == text.replace(" ", "")


@given(st.lists(st.integers(min_value=1, max_value=300), max_size=40), st.integers(min_value=50, max_value=500))
def test_packing_keeps_every_line_once_in_order_within_the_limit(sizes: list[int], max_chars: int) -> None:
    lines = [Line(i, "x" * min(size, max_chars)) for i, size in enumerate(sizes)]
    parts = prompts.pack(lines, max_chars)
    assert [line for part in parts for line in part] == lines
    assert all(len("\n".join(line.text for line in part)) <= max_chars for part in parts)
    assert all(part for part in parts)


def test_the_context_says_the_date_people_and_agenda() -> None:
    t = meeting("Ann: Hi.", participants=("Ann", "Bob"), agenda=("Budget", "Hiring"))
    assert "2026-03-04 (Wednesday)" in prompts.context(t) and "Participants: Ann, Bob." in prompts.context(t)
    assert "Planned agenda: Budget; Hiring." in prompts.context(t)
    assert "date is unknown" in prompts.context(meeting("Ann: Hi.", day=None))


def test_the_schema_is_strict_and_limits_assignees_to_the_participants() -> None:
    schema = answers.extraction_schema(("Ann", "Bob"))
    assert schema["additionalProperties"] is False and set(schema["required"]) == set(schema["properties"])
    item = schema["properties"]["action_items"]["items"]
    assert item["properties"]["assignee"]["enum"] == ["Ann", "Bob", ""] and set(item["required"]) == set(item["properties"])


def test_a_good_answer_parses_even_inside_a_code_fence() -> None:
    answer = answers.parse_answer("```json\n" + json.dumps(good_extraction()) + "\n```", Extraction)
    assert isinstance(answer, Extraction) and answer.action_items[0].due_date == "2026-03-06"
    assert answers.parse_answer('{"brief": ["a"], "keywords": [], "extra": 1}', Reduction).brief == ["a"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "not JSON"), ("[1, 2", "not JSON"), ('{"brief": "one"}', "not the schema: brief"),
     (json.dumps(good_extraction() | {"keywords": None}), "not the schema: keywords"),
     (json.dumps(good_extraction() | {"action_items": [good_extraction()["action_items"][0] | {"priority": "urgent"}]}),
      "action_items.0.priority"),
     (json.dumps(good_extraction() | {"action_items": [good_extraction()["action_items"][0] | {"start_date": "Friday"}]}),
      "start_date: 'Friday' is not YYYY-MM-DD"),
     (json.dumps(good_extraction() | {"topics": [{"title": "x", "first_turn": "0", "last_turn": 1, "agenda_item": None}]}),
      "topics.0.first_turn")],
)  # fmt: skip
def test_invalid_answers_are_named(content: str, message: str) -> None:
    with pytest.raises(InvalidOutput, match=message.replace("(", r"\(").replace(".", r"\.")):
        answers.parse_answer(content, Extraction)


@pytest.mark.parametrize(
    ("said", "expected"),
    [("Ann Lee", "Ann Lee"), ("ann lee", "Ann Lee"), ("Ann", "Ann Lee"), ("Lee", "Ann Lee"), ("carol", "Carol"),
     ("Bob", ""), ("Stone", "Bob Stone"), ("Dave", ""), ("", ""), ("Ann Stone", "")],
)  # fmt: skip
def test_an_assignee_is_a_participant_or_nobody(said: str, expected: str) -> None:
    assert answers.resolve_assignee(said, PEOPLE) == expected


def test_items_map_turns_to_dialogues_and_are_kept_once() -> None:
    t = meeting("Ann: One.", "Bob: Two.")
    raw = [RawItem(description=" Book  the room ", assignee="bob", start_date=None, due_date="2026-03-10",
                   priority="low", turns=[1, 1, -1, 5]),
           RawItem(description="book the room.", assignee="", start_date=None, due_date=None, priority="normal", turns=[])]  # fmt: skip
    [item] = answers.action_items(raw, t.dialogues, ("Ann", "Bob"))
    assert (item.description, item.assignee, item.due_date, item.priority, item.dialogue_ids) == (
        "Book the room", "Bob", date(2026, 3, 10), "low", ("d1",))  # fmt: skip


def test_topics_keep_turns_inside_the_transcript_and_only_planned_agenda_items() -> None:
    t = meeting("Ann: One.", "Bob: Two.", "Ann: Three.")
    raw = [RawTopic(title="Later", first_turn=2, last_turn=9, agenda_item="hiring"),
           RawTopic(title="First", first_turn=0, last_turn=1, agenda_item="Something else"),
           RawTopic(title="Backwards", first_turn=2, last_turn=1, agenda_item=None)]  # fmt: skip
    topics = answers.agenda(raw, t.dialogues, ("Budget", "Hiring"))
    assert [(x.title, x.dialogue_ids, x.agenda_item) for x in topics] == [("First", ("d0", "d1"), None),
                                                                          ("Later", ("d2",), "Hiring")]  # fmt: skip
    assert topics[1].start_ms == t.dialogues[2].start_ms and topics[1].end_ms == t.dialogues[2].end_ms
    across_parts = [RawTopic(title="Budget", first_turn=0, last_turn=1, agenda_item="budget"),
                    RawTopic(title="budget", first_turn=2, last_turn=2, agenda_item=None)]  # fmt: skip
    [joined] = answers.agenda(across_parts, t.dialogues, ("Budget",))
    assert (joined.dialogue_ids, joined.agenda_item, joined.end_ms) == (("d0", "d1", "d2"), "Budget", t.dialogues[2].end_ms)


def test_keywords_and_bullets() -> None:
    assert answers.keyword_list(["Budget", "budget.", "Ann", "Lee", " hiring  plan ", "x"], ("Ann Lee",), limit=2) == ["Budget", "hiring plan"]
    assert answers.bullets(["- one", "", "* two", "three"], limit=2) == "- one\n- two"


def test_retry_after_is_seconds_or_a_date_and_the_wait_is_bounded() -> None:
    assert retry_after_s("7") == 7.0 and retry_after_s(None) is None and retry_after_s("soon") is None
    assert retry_after_s("Wed, 04 Mar 2026 10:00:30 GMT", now=1772618400.0) == 30.0
    policy = RetryPolicy(retries=3, backoff_s=0.5, max_wait_s=5)
    assert [policy.wait_s(n, None) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert policy.wait_s(1, 120.0) == 5.0 and policy.wait_s(1, 2.0) == 2.0


def test_which_failures_get_another_attempt() -> None:
    policy = RetryPolicy(retries=2, invalid_output_retries=1)
    assert policy.allows_another(RemoteCallError("server_error", "x"), 2, 0)
    assert not policy.allows_another(RemoteCallError("server_error", "x"), 3, 0)
    assert not policy.allows_another(RemoteCallError("client_error", "x"), 1, 0)
    assert policy.allows_another(RemoteCallError("invalid_output", "x"), 0, 1)
    assert not policy.allows_another(RemoteCallError("invalid_output", "x"), 0, 2)
    assert not policy.allows_another(RemoteCallError("timeout", "x", retryable=False), 1, 0)


def test_server_sent_events_are_read_line_by_line() -> None:
    lines = [": keep-alive", "id: 1", "event: message", 'data: {"a":', "data: 1}", "", "", "data:[DONE]", "",
             "event: error", "data: boom"]  # fmt: skip
    events = [(e.event, e.data) for e in server_sent_events(lines)]
    assert events == [("message", '{"a":\n1}'), ("message", "[DONE]"), ("error", "boom")]


@pytest.mark.parametrize(
    "markdown",
    ["", "plain text", "### A\n- x\n\n### B\n- y", "intro\n\n## A\n- x\n#not a heading\n### B\n", "### Only"],
)
def test_sections_join_back_to_the_markdown(markdown: str) -> None:
    pieces = markdown_sections(markdown)
    assert "".join(pieces) == markdown and all(pieces)
    assert all(p.startswith("#") for p in pieces[1:])


def test_the_local_backend_hands_on_one_section_at_a_time() -> None:
    t = meeting("Ann: The release is blocked on the flaky checkout test.",
                "Bob: I'll fix the flaky checkout test by Friday.", "Ann: Great, thanks Bob.")  # fmt: skip
    chunks: list[str] = []
    result = LocalBackend().enrich(t, chunks.append)
    assert "".join(chunks) == result.summary.detailed and len(chunks) >= 2
    assert all(c.startswith("### ") for c in chunks) and result == LocalBackend().enrich(t)

"""The enrichment benchmark's scoring: task matching and key-point coverage."""

from __future__ import annotations

import json

from bench.enrichment import DETAILED_SHARE, MEETINGS, covered, figures, match_tasks, within_budget
from enrichment.text import words


def test_tasks_match_by_description_one_to_one_best_first() -> None:
    predicted = [{"description": "Send the quote to Acme"}, {"description": "Book the room"},
                 {"description": "Send Acme the revised quote today"}]  # fmt: skip
    expected = [{"description": "Send the revised quote to Acme"}, {"description": "Renew the certificate"}]
    pairs = match_tasks(predicted, expected)
    assert [(i, j) for i, j, _ in pairs] == [(2, 0)]


def test_a_key_point_is_covered_by_one_line_holding_half_its_words() -> None:
    assert covered("Release planned for Thursday the twelfth", ["- the release is still planned for Thursday"])
    assert not covered("Release planned for Thursday the twelfth", ["- the release", "- on Thursday", "- the twelfth"])


def test_figures_of_a_meeting_without_tasks() -> None:
    row = {"predicted": 0, "expected": 0, "matched": 0, "assignee_right": 0, "due_date_right": 0,
           "key_points": 4, "key_points_covered": 3, "key_points_in_brief": 1, "key_points_with_items": 3,
           "key_points_in_pasted_transcript": 2}  # fmt: skip
    f = figures(row)
    assert (f["precision"], f["recall"], f["assignee_accuracy"], f["key_point_coverage"]) == (1.0, 1.0, None, 0.75)


def test_the_scripted_meetings_are_well_formed() -> None:
    kinds = set()
    for path in sorted(MEETINGS.glob("*.json")):
        m = json.loads(path.read_text())
        kinds.add(m["kind"])
        assert m["dialogues"] and m["expected"]["key_points"] and m["meeting_date"]
        for task in m["expected"]["action_items"]:
            assert task["assignee"] == "" or task["assignee"] in m["participants"]
    assert len(kinds) >= 8 and {"stand-up", "planning", "incident review", "sales call", "one-on-one",
                                "cancels a task", "ambiguous assignees", "no tasks"} <= kinds  # fmt: skip


def test_summary_lines_count_only_within_the_length_budget() -> None:
    summary = "### Budget\n- one two three four\n- five six seven eight\n- nine ten"
    assert within_budget(summary, 8) == ["Budget", "one two three four"]
    assert within_budget(summary, 100) == ["Budget", "one two three four", "five six seven eight", "nine ten"]


def test_pasting_the_transcript_does_not_cover_every_key_point() -> None:
    """Length cannot buy coverage: the whole transcript as the summary is read only up to the budget."""
    meeting = json.loads((MEETINGS / "product_review.json").read_text())
    transcript = [d["text"] for d in meeting["dialogues"]]
    budget = DETAILED_SHARE * sum(len(words(t)) for t in transcript)
    lines = within_budget("\n".join(transcript), budget)
    keys = meeting["expected"]["key_points"]
    cut = sum(covered(k, lines) for k in keys)
    assert cut < 0.8 * len(keys)
    assert sum(covered(k, transcript) for k in keys) > cut  # uncut, it would cover more

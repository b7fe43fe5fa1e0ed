"""Search's pure half (api/search_text.py): a query's words, snippets around the first match, links."""

from __future__ import annotations

import re

from api.fields import NOT_BLANK
from api.search_text import SNIPPET_CHARS, first_match, query_words, review_url, snippet

FILLER = " ".join(f"word{i}" for i in range(60))  # 469 characters of words that never match


def test_words_split_on_any_whitespace_once_each() -> None:
    assert query_words("  budget\tQ3\u00a0plan \u3000 ") == ["budget", "Q3", "plan"]
    assert query_words("Plan plan PLAN review") == ["Plan", "review"]


def test_a_query_the_schema_takes_has_a_word() -> None:
    for q in ("x", " \u2028x", "\ufeffy\u0085"):
        assert re.search(NOT_BLANK, q) and query_words(q), q
    for q in (" ", "\u00a0\u2003\ufeff"):
        assert not re.search(NOT_BLANK, q) and query_words(q) == [], q


def test_first_match_is_case_insensitive_and_prefers_the_longer_word() -> None:
    assert first_match("The Budget budgeted", ["budget"]) == (4, 6)
    assert first_match("x budgeted", ["budget", "budgeted"]) == (2, 8)
    assert first_match("a.b*c", ["b*"]) == (2, 2), "words are literal text, not patterns"
    assert first_match("nothing", ["else"]) is None


def test_a_short_text_is_its_own_snippet_on_one_line() -> None:
    assert snippet("Hello\n  there,   Budget.", ["budget"]) == "Hello there, Budget."


def test_snippet_is_a_window_around_the_first_match_cut_between_words() -> None:
    text = f"{FILLER} the BUDGET for next year {FILLER}"
    found = snippet(text, ["budget"])
    assert found.startswith("…") and found.endswith("…")
    assert "the BUDGET for next year" in found
    assert len(found) <= SNIPPET_CHARS + 2
    body = found.strip("…")
    assert all(w.startswith("word") or w in {"the", "BUDGET", "for", "next", "year"} for w in body.split(" ")), \
        "no word cut in half"
    middle = found.index("BUDGET")
    assert abs(middle - len(found) / 2) < 30, "the match sits near the middle"


def test_snippet_at_either_end_of_the_text() -> None:
    first = snippet(f"Budget first. {FILLER}", ["budget"])
    assert first.startswith("Budget first.") and first.endswith("…")
    last = snippet(f"{FILLER} budget last", ["budget"])
    assert last.startswith("…") and last.endswith("budget last")


def test_snippet_without_a_match_is_the_start() -> None:
    assert snippet(FILLER, ["absent"]).startswith("word0 word1")


def test_review_url_points_at_the_dialogue() -> None:
    assert review_url("mtg_1a", "dlg_2b") == "/meetings/mtg_1a/review#d=dlg_2b"

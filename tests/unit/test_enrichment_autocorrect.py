"""The local auto-correct keeps the speaker's words and fixes their form (enrichment/autocorrect.py)."""

from __future__ import annotations

import pytest

from enrichment.autocorrect import autocorrect, known_terms

TERMS = known_terms(["alice", "bob", "carol", "Priyanka", "bob-3f"], "Kubernetes migration", ["PostgreSQL upgrade"])


def test_the_terms_are_names_and_distinctive_words_of_title_and_agenda() -> None:
    assert TERMS == ["Alice", "Bob", "Carol", "Priyanka", "Kubernetes", "PostgreSQL"]


@pytest.mark.parametrize(("said", "corrected"), [
    ("alice can you send it i think the the report is late", "Alice can you send it I think the report is late."),
    ("We met Priyanca and alice about kubernetes , ok", "We met Priyanka and Alice about Kubernetes, ok."),
    ("what about postgresql", "What about PostgreSQL?"),
    ("it is very very good.", "It is very very good."),
    ("done.   next, we ship", "Done. Next, we ship."),
    ("I will ask carol", "I will ask carol."),  # Carol is also a word: left as said
    ("Grand plans", "Grand plans."),  # a sentence's first word is not taken for a misheard name
    ("", ""),
])  # fmt: skip
def test_form_is_fixed_and_words_are_kept(said: str, corrected: str) -> None:
    assert autocorrect(said, TERMS) == corrected


def test_it_is_stable() -> None:
    once = autocorrect("so i said the the plan works", TERMS)
    assert autocorrect(once, TERMS) == once

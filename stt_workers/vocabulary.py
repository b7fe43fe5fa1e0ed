"""A meeting's vocabulary as the decoder's prompt, pure.

Whisper writes what its previous-text prompt primes it to: a list of names and jargon said in a meeting
lifts those words' recall and fixes their spelling, and the list's other words are not written where they
are not said (bench/README.md, "Meeting vocabulary as the decoder's prompt": 26 of 26 listed words found
against 23 of 26, no distractor written). ``vocabulary_prompt`` turns a meeting's participant names, title,
agenda and glossary into that list: the terms joined by ``", "``, deduplicated case-blind (the first
spelling wins), in a fixed order of importance (names, glossary, title, agenda items), each taken while the
list fits the token budget; a term that does not fit is left out and shorter later ones may still go in.
The same inputs always make the same text, so a replay decodes with the prompt the live run had.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

# Most tokens a meeting's vocabulary takes in the decoder's prompt (before the stream's previous text, if
# any): the measured lists were at most this long, and the decode cost did not change measurably.
VOCABULARY_TOKENS = 64
SEPARATOR = ", "
_STRIP = " \t\r\n,;.:!?\"'()[]{}"  # around a term: list punctuation, not part of the term


def clean_term(term: str) -> str:
    """``term`` with its whitespace runs made one space and list punctuation trimmed from its ends ("" when
    nothing is left); commas inside it become spaces, since a comma separates the list's terms."""
    return " ".join(term.replace(",", " ").split()).strip(_STRIP)


def vocabulary_terms(names: Iterable[str] = (), glossary: Iterable[str] = (), title: str = "",
                     agenda: Iterable[str] = ()) -> list[str]:  # fmt: skip
    """The distinct cleaned terms, names first, then the glossary, the title and the agenda items, each
    term once (compared case-blind; the first spelling is kept), empty ones left out."""
    seen: dict[str, str] = {}
    for term in (*names, *glossary, title, *agenda):
        cleaned = clean_term(term)
        if cleaned:
            seen.setdefault(cleaned.casefold(), cleaned)
    return list(seen.values())


def vocabulary_prompt(terms: Iterable[str], count_tokens: Callable[[str], int],
                      budget: int = VOCABULARY_TOKENS) -> str:  # fmt: skip
    """``terms`` (``vocabulary_terms``) joined by ``", "``, each in order while the text stays within
    ``budget`` tokens (``count_tokens``: how many tokens a text is, as the decoder encodes it); a term that
    would go over is skipped. "" when none fits."""
    chosen: list[str] = []
    for term in terms:
        if count_tokens(SEPARATOR.join([*chosen, term])) <= budget:
            chosen.append(term)
    return SEPARATOR.join(chosen)

"""The pure half of search: a query's words, a result's snippet and its link (no I/O; ``api.search``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote

from api.fields import SPACE

SNIPPET_CHARS = 160
ELLIPSIS = "…"
_SPACES = re.compile(f"[{SPACE}]+")


def query_words(q: str) -> list[str]:
    """The words of a query: split on whitespace (the characters ``api.fields.SPACE`` names, which the
    query's schema uses too), empty ones dropped, each once (case-insensitively), in the order typed."""
    seen: set[str] = set()
    out = []
    for word in _SPACES.split(q):
        if word and word.casefold() not in seen:
            seen.add(word.casefold())
            out.append(word)
    return out


def first_match(text: str, words: Sequence[str]) -> tuple[int, int] | None:
    """Where the first of ``words`` occurs in ``text``, case-insensitively: (start, length), the longest
    word where several start at one place; None when none does."""
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    found = re.search(alternatives, text, flags=re.IGNORECASE)
    return (found.start(), found.end() - found.start()) if found else None


def snippet(text: str, words: Sequence[str], width: int = SNIPPET_CHARS) -> str:
    """About ``width`` characters of ``text`` (on one line) around the first match of ``words``, cut
    between words where it can, with ``…`` where text is left out. Plain text: the client escapes it."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    start_of_match, length = first_match(flat, words) or (0, 0)
    start = max(0, min(start_of_match - max(0, width - length) // 2, len(flat) - width))
    end = min(len(flat), start + width)
    if start > 0:
        space = flat.find(" ", start, start_of_match)
        start = space + 1 if space != -1 else start
    if end < len(flat):
        space = flat.rfind(" ", start_of_match + length, end)
        end = space if space != -1 else end
    return (ELLIPSIS if start > 0 else "") + flat[start:end] + (ELLIPSIS if end < len(flat) else "")


def review_url(meeting_id: str, dialogue_id: str) -> str:
    """The web app's review page of the meeting, at the dialogue."""
    return f"/meetings/{quote(meeting_id, safe='')}/review#d={quote(dialogue_id, safe='')}"

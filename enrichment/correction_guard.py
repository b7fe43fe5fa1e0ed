"""The guard on a language model's auto-correction: it may fix grammar, punctuation and spelling, never
rewrite what was said. Pure functions.

Words are compared without case and punctuation ("ok ," and "OK." are the same word), so the share of
words changed counts only real word changes: a word replaced, added or dropped. ``word_change`` is the word
edit distance (Levenshtein over words) over the number of words said.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[\w']+")


def words(text: str) -> list[str]:
    """The words of ``text``, lowercased, without punctuation (a curly apostrophe read as a straight one)."""
    return _WORD.findall(text.replace("’", "'").lower())


def word_change(said: str, corrected: str, limit: float = 1.0) -> float:
    """The word edit distance from ``said`` to ``corrected`` over the number of words said (at least 1):
    0.0 for the same words, 1.0 for all of them replaced (more when words are added). Above ``limit`` the
    count stops early and a value above ``limit`` is returned (enough to reject; the exact value is not
    needed)."""
    a, b = words(said), words(corrected)
    scale = max(len(a), 1)
    budget = int(limit * scale)  # the most edits within the limit
    distance = _bounded_distance(a, b, budget)
    return distance / scale


def within(said: str, corrected: str, max_change: float) -> bool:
    """Whether ``corrected`` keeps the words of ``said`` up to ``max_change`` (see ``word_change``)."""
    return word_change(said, corrected, max_change) <= max_change


def _bounded_distance(a: list[str], b: list[str], budget: int) -> int:
    """Levenshtein distance of two word lists, exact when at most ``budget``, else some value above it.
    Only cells within ``budget`` of the diagonal can lie on a path that cheap, so each row costs
    O(budget), and a row whose cells all exceed the budget ends the count."""
    over = budget + 1
    if abs(len(a) - len(b)) > budget:
        return over
    previous = {j: j for j in range(0, min(len(b), budget) + 1)}
    for i in range(1, len(a) + 1):
        current = {}
        if i <= budget:
            current[0] = i
        for j in range(max(1, i - budget), min(len(b), i + budget) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            replace = previous.get(j - 1, over) + cost
            current[j] = min(previous.get(j, over) + 1, current.get(j - 1, over) + 1, replace)
        if min(current.values(), default=over) > budget:
            return over
        previous = current
    return min(previous.get(len(b), over), over)

"""Word error rate, for the demo's report, the tests, the benchmarks and run comparisons, and a word alignment
that shows where two texts differ."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Literal

_WORD = re.compile(r"[a-z0-9']+")


def normalize(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("-", " "))


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / reference words, after lower-casing and dropping
    punctuation."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1] / len(ref)


Edit = Literal["equal", "substitute", "delete", "insert"]
# Texts larger than this (reference words x hypothesis words) are not aligned by one quadratic edit-distance
# table: their longest matching runs anchor the alignment first; a gap between them still larger is aligned
# pairwise (two texts that share nothing for thousands of words).
MAX_GAP_CELLS = 250_000


def align_words(reference: Sequence[str], hypothesis: Sequence[str]) -> list[tuple[Edit, int | None, int | None]]:
    """An alignment of two word sequences (``normalize``'s words): ``(edit, reference index, hypothesis
    index)`` in order, the index None on the side that has no word (a deletion has no hypothesis word, an
    insertion no reference word). A minimum edit alignment, so its edits count as ``word_error_rate``'s, up
    to ``MAX_GAP_CELLS``; larger texts are anchored on their longest matching runs (difflib) and each gap
    between them is aligned so, which may count a few edits more."""
    if len(reference) * len(hypothesis) <= MAX_GAP_CELLS:
        return _gap(reference, hypothesis, 0, len(reference), 0, len(hypothesis))
    ops: list[tuple[Edit, int | None, int | None]] = []
    i = j = 0
    matcher = difflib.SequenceMatcher(None, reference, hypothesis, autojunk=False)
    for block in matcher.get_matching_blocks():  # the last block is an empty sentinel at both ends
        ops += _gap(reference, hypothesis, i, block.a, j, block.b)
        ops += [("equal", block.a + k, block.b + k) for k in range(block.size)]
        i, j = block.a + block.size, block.b + block.size
    return ops


def _gap(ref: Sequence[str], hyp: Sequence[str], i0: int, i1: int, j0: int,
         j1: int) -> list[tuple[Edit, int | None, int | None]]:  # fmt: skip
    n, m = i1 - i0, j1 - j0
    if n == 0 or m == 0 or n * m > MAX_GAP_CELLS:
        pairs = min(n, m) if n * m > MAX_GAP_CELLS else 0
        out: list[tuple[Edit, int | None, int | None]] = [
            ("equal" if ref[i0 + k] == hyp[j0 + k] else "substitute", i0 + k, j0 + k) for k in range(pairs)
        ]
        out += [("delete", i, None) for i in range(i0 + pairs, i1)]
        out += [("insert", None, j) for j in range(j0 + pairs, j1)]
        return out
    cost = [[0] * (m + 1) for _ in range(n + 1)]
    for a in range(n + 1):
        cost[a][0] = a
    for b in range(m + 1):
        cost[0][b] = b
    for a in range(1, n + 1):
        r = ref[i0 + a - 1]
        for b in range(1, m + 1):
            cost[a][b] = min(cost[a - 1][b] + 1, cost[a][b - 1] + 1, cost[a - 1][b - 1] + (r != hyp[j0 + b - 1]))
    out = []
    a, b = n, m
    while a or b:
        if a and b and cost[a][b] == cost[a - 1][b - 1] + (ref[i0 + a - 1] != hyp[j0 + b - 1]):
            out.append(("equal" if ref[i0 + a - 1] == hyp[j0 + b - 1] else "substitute", i0 + a - 1, j0 + b - 1))
            a, b = a - 1, b - 1
        elif a and cost[a][b] == cost[a - 1][b] + 1:
            out.append(("delete", i0 + a - 1, None))
            a -= 1
        else:
            out.append(("insert", None, j0 + b - 1))
            b -= 1
    return out[::-1]

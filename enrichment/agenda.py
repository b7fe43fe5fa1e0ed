"""The meeting's agenda as it happened: stretches of talk about one thing, with time ranges and titles.

Boundaries come from two signals on the turns: a change of vocabulary (TextTiling: the similarity of the
words of the few turns before a gap with the few after; a deep valley is a change of topic) and spoken
cues ("next, pricing page", "moving on", "last, the roadmap"). Each stretch is titled by the planned agenda
item it shares most words with, else by its own keywords."""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Sequence

from enrichment.keywords import keywords
from enrichment.model import AgendaTopic, Dialogue
from enrichment.text import content_words

WINDOW_TURNS = 3
MIN_TURNS = 4  # a topic shorter than this is part of its neighbour
_CUE = re.compile(r"^(?:\W*\w+[,.]\s+){0,2}?(?:next(?: up)?|moving on|next item|next topic|last(?:ly)?|finally|"
                  r"let's (?:move on|turn|talk about|look at)|on to|now,? the|the next thing|"
                  r"(?:second|third|first) (?:thing|item))\b", re.IGNORECASE)  # fmt: skip


def _cosine(a: Counter[str], b: Counter[str]) -> float:
    dot = sum(a[w] * b[w] for w in a.keys() & b.keys())
    norm = math.sqrt(sum(v * v for v in a.values())) * math.sqrt(sum(v * v for v in b.values()))
    return dot / norm if norm else 0.0


def boundaries(dialogues: Sequence[Dialogue], min_turns: int = MIN_TURNS) -> list[int]:
    """Indices of the turns that start a new topic (0 always)."""
    n = len(dialogues)
    bags = [Counter(content_words(d.text)) for d in dialogues]
    gaps = []
    for i in range(1, n):
        before = sum((bags[j] for j in range(max(0, i - WINDOW_TURNS), i)), Counter())
        after = sum((bags[j] for j in range(i, min(n, i + WINDOW_TURNS))), Counter())
        gaps.append(_cosine(before, after))
    depth = []
    for k, value in enumerate(gaps):
        left = max(gaps[: k + 1])
        right = max(gaps[k:])
        depth.append(left - value + right - value)
    cues = {i for i in range(1, n) if _CUE.match(dialogues[i].text)}
    if depth:
        mean = sum(depth) / len(depth)
        spread = math.sqrt(sum((d - mean) ** 2 for d in depth) / len(depth))
        deep = {k + 1 for k, d in enumerate(depth) if d > mean + spread}
    else:
        deep = set()
    chosen = [0]
    for i in sorted(cues | deep, key=lambda i: (i not in cues, -(depth[i - 1] if depth else 0))):
        if all(abs(i - c) >= min_turns for c in chosen) and n - i >= min_turns // 2:
            chosen.append(i)
    return sorted(chosen)


def agenda_topics(dialogues: Sequence[Dialogue], agenda: Sequence[str] = (), names: Sequence[str] = ()) -> list[AgendaTopic]:
    """Topics in order, covering every turn; each matched to the planned item it shares most words with."""
    turns = sorted(dialogues, key=lambda d: (d.start_ms, d.end_ms))
    if not turns:
        return []
    cuts = [*boundaries(turns), len(turns)]
    topics = []
    items = [(item, set(content_words(item))) for item in agenda]
    for a, b in itertools.pairwise(cuts):
        part = turns[a:b]
        words = Counter(w for d in part for w in content_words(d.text))
        best = max(items, key=lambda item: sum(words[w] for w in item[1]), default=None)
        matched = best[0] if best and sum(words[w] for w in best[1]) > 0 else None
        title = matched or _title(part, names)
        topics.append(AgendaTopic(title=title, start_ms=part[0].start_ms, end_ms=max(d.end_ms for d in part),
                                  agenda_item=matched, dialogue_ids=tuple(d.dialogue_id for d in part)))  # fmt: skip
    return topics


def _title(part: Sequence[Dialogue], names: Sequence[str]) -> str:
    words = keywords(part, names, limit=2)
    title = ", ".join(words) if words else "Discussion"
    return title[:1].upper() + title[1:]

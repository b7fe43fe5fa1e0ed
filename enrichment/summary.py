"""Extractive summary in Markdown: the meeting's own sentences, chosen by centrality.

Sentences are ranked by TextRank (PageRank over their TF-IDF cosine similarities), with decisions and
commitments favoured and small talk held back. Map-reduce over the meeting's topics (enrichment/agenda.py):
each topic keeps its best sentences (map), so no part of a long meeting is cut; ``brief`` takes the best
of all those (reduce), in the order they were said. ``detailed`` has one section per topic, then the
decisions and the action items."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from enrichment.keywords import keywords
from enrichment.model import ActionItem, AgendaTopic, Dialogue, Summary
from enrichment.text import content_words, dice, split_sentences, words

WORD_SHARE = 0.25  # of the meeting's words the topic sections of the detailed summary may use
MIN_WORDS = 60
SECTION_MAX = 8
BRIEF_MAX = 5
_DECISION = re.compile(r"\b(?:decided|decision|agreed|agree on|let's go with|we'll go with|the plan is|going forward|"
                       r"we're prioriti[sz]ing|moves? to|is off|not do the|the goal|headline|is planned|"
                       r"we'll|let's (?:not|move|run|have)|instead)\b", re.IGNORECASE)  # fmt: skip
_FILLER = re.compile(r"\b(?:um+|uh+|erm)\b,?\s*|(?:^|(?<=,))\s*(?:you know|i mean|like),\s*", re.IGNORECASE)
_SMALL_TALK = re.compile(r"^(?:thanks|thank you|hey|hi|hello|morning|good morning|welcome|bye|see you)\b", re.IGNORECASE)
_OPENERS = re.compile(r"^(?:(?:so|yeah|yes|okay|ok|right|well|and|alright|oh|honestly|basically|great|good|hm+)\b[,.]?\s+)+",
                      re.IGNORECASE)  # fmt: skip


@dataclass(frozen=True)
class _Sentence:
    order: int
    speaker: str
    text: str
    dialogue_id: str
    start_ms: int


def _sentences(dialogues: Sequence[Dialogue]) -> list[_Sentence]:
    out = []
    for d in dialogues:
        for s in split_sentences(d.text):
            out.append(_Sentence(len(out), d.speaker, s, d.dialogue_id, d.start_ms))
    return out


def textrank(texts: Sequence[str], damping: float = 0.85, iterations: int = 60) -> list[float]:
    """PageRank scores of sentences over the cosine similarity of their TF-IDF vectors (sum to 1)."""
    n = len(texts)
    if n == 0:
        return []
    bags = [Counter(content_words(t)) for t in texts]
    df = Counter(w for bag in bags for w in bag)
    vocab = {w: i for i, w in enumerate(sorted(df))}
    matrix = np.zeros((n, max(len(vocab), 1)))
    for i, bag in enumerate(bags):
        for w, c in bag.items():
            matrix[i, vocab[w]] = c * math.log((1 + n) / (1 + df[w]) + 1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    unit = np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, 0.0)
    sums = similarity.sum(axis=1, keepdims=True)
    transition = np.divide(similarity, sums, out=np.full_like(similarity, 1.0 / n), where=sums > 0)
    rank = np.full(n, 1.0 / n)
    for _ in range(iterations):
        rank = (1 - damping) / n + damping * transition.T @ rank
    return [float(r) for r in rank / rank.sum()]


def _weight(sentence: _Sentence, tasks: list[set[str]]) -> float:
    """Decisions and figures up; questions, small talk and what the action items already say down."""
    n = len(words(sentence.text))
    weight = 1.0
    if _DECISION.search(sentence.text):
        weight *= 1.6
    own = set(content_words(sentence.text))
    if own and any(len(own & task) >= 0.5 * len(task) for task in tasks if task):
        weight *= 0.4  # the Action items section says it already
    if _SMALL_TALK.match(sentence.text):
        weight *= 0.3
    if sentence.text.rstrip().endswith("?"):
        weight *= 0.5
    if n < 6:
        weight *= 0.3
    if re.search(r"\d", sentence.text):
        weight *= 1.2  # figures are what people come back for
    return weight


def clean(sentence: str) -> str:
    """A spoken sentence made readable: fillers and openers ("so, yeah, um") dropped."""
    text = _OPENERS.sub("", _FILLER.sub("", sentence)).strip()
    return text[:1].upper() + text[1:]


def summarize(dialogues: Sequence[Dialogue], topics: Sequence[AgendaTopic], items: Sequence[ActionItem]) -> Summary:
    """Brief and detailed Markdown summaries of the whole meeting."""
    sentences = _sentences(sorted(dialogues, key=lambda d: (d.start_ms, d.end_ms)))
    if not sentences:
        return Summary(brief="", detailed="")
    tasks = [set(content_words(item.description)) for item in items]
    ranks = textrank([s.text for s in sentences])
    key_words = {w for phrase in keywords(dialogues, limit=15) for w in content_words(phrase)}
    score = {s.order: ranks[s.order] * _weight(s, tasks) * (1 + 0.5 * len(key_words & set(content_words(s.text))))
             for s in sentences}  # fmt: skip
    section_of = {d: t for t in topics for d in t.dialogue_ids}
    sections: list[tuple[AgendaTopic | None, list[_Sentence]]] = []
    for s in sentences:
        topic = section_of.get(s.dialogue_id)
        if not sections or sections[-1][0] is not topic:
            sections.append((topic, []))
        sections[-1][1].append(s)
    total_words = sum(len(words(s.text)) for s in sentences)
    budget = max(MIN_WORDS, WORD_SHARE * total_words)
    picked: list[tuple[AgendaTopic | None, list[_Sentence]]] = []
    for topic, part in sections:  # map: every section keeps its best sentences, within its share of words
        allowance = budget * sum(len(words(s.text)) for s in part) / max(total_words, 1)
        best: list[_Sentence] = []
        used = 0
        for s in sorted(part, key=lambda s: -score[s.order]):
            size = len(words(s.text))
            if len(best) == SECTION_MAX or (best and used + size > allowance):
                break
            own = set(content_words(s.text))
            if all(dice(own, set(content_words(b.text))) < 0.5 for b in best):  # no sentence twice in other words
                best.append(s)
                used += size
        picked.append((topic, sorted(best, key=lambda s: s.order)))
    pool = [s for _, part in picked for s in part]  # reduce: the best of the best, one per section first
    brief_n = min(BRIEF_MAX, len(pool))
    firsts = sorted((max(part, key=lambda s: score[s.order]) for _, part in picked if part), key=lambda s: -score[s.order])
    chosen = firsts[:brief_n]
    for s in sorted(pool, key=lambda s: -score[s.order]):
        if len(chosen) >= brief_n:
            break
        if s not in chosen:
            chosen.append(s)
    brief = "\n".join(f"- {clean(s.text)}" for s in sorted(chosen, key=lambda s: s.order))
    detailed = [_section(topic, part) for topic, part in picked]
    decisions = [s for s in sentences if _DECISION.search(s.text) and s not in pool and len(words(s.text)) >= 5]
    if decisions:
        detailed.append("### Decisions\n" + "\n".join(f"- {clean(s.text)} ({s.speaker})" for s in decisions[:8]))
    if items:
        detailed.append("### Action items\n" + "\n".join(_item_line(i) for i in items))
    return Summary(brief=brief, detailed="\n\n".join(detailed))


def _section(topic: AgendaTopic | None, part: Sequence[_Sentence]) -> str:
    title = topic.title if topic else "Discussion"
    span = f" ({_clock(topic.start_ms)}–{_clock(topic.end_ms)})" if topic else ""
    lines = [f"- **{s.speaker}:** {clean(s.text)}" for s in part]
    return f"### {title}{span}\n" + "\n".join(lines)


def _item_line(item: ActionItem) -> str:
    who = item.assignee or "unassigned"
    due = f", due {item.due_date.isoformat()}" if item.due_date else ""
    flag = f", {item.priority} priority" if item.priority != "normal" else ""
    return f"- [ ] {item.description} ({who}{due}{flag})"


def _clock(ms: int) -> str:
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"

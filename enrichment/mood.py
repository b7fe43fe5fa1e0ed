"""Mood of the meeting and of each speaker from VADER's sentiment lexicon (vaderSentiment ships it inside
its package; nothing is downloaded). A sentence's compound score is in [-1, 1]; a speaker's score is the
mean over their sentences weighted by word count; >= 0.05 is positive, <= -0.05 negative (VADER's own
thresholds)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from enrichment.model import Dialogue, Mood, MoodScore
from enrichment.text import split_sentences, words

POSITIVE, NEGATIVE = 0.05, -0.05


@cache
def _analyzer():  # type: ignore[no-untyped-def]
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentence_sentiment(sentence: str) -> float:
    """VADER's compound score of one sentence."""
    return float(_analyzer().polarity_scores(sentence)["compound"])


def label(score: float) -> str:
    return "positive" if score >= POSITIVE else "negative" if score <= NEGATIVE else "neutral"


def _score(weighted: list[tuple[float, int]]) -> MoodScore:
    total = sum(n for _, n in weighted)
    score = sum(s * n for s, n in weighted) / total if total else 0.0
    return MoodScore(label=label(score), score=round(score, 3))  # type: ignore[arg-type]


def meeting_mood(dialogues: Sequence[Dialogue]) -> Mood:
    """Overall and per-speaker mood."""
    per_speaker: dict[str, list[tuple[float, int]]] = {}
    for d in dialogues:
        for sentence in split_sentences(d.text):
            per_speaker.setdefault(d.speaker, []).append((sentence_sentiment(sentence), len(words(sentence))))
    everything = [pair for pairs in per_speaker.values() for pair in pairs]
    return Mood(overall=_score(everything), speakers={s: _score(p) for s, p in per_speaker.items()})

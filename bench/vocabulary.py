"""Biasing lists for measuring a meeting vocabulary as the decoder's prompt (``bench/real_speech.py
--vocabulary``), pure.

The standard contextual-biasing method: a track's list holds the rare words of its reference plus as many
distractors (rare words of the other tracks, not in this one), shuffled, so that a list is not the answer
key. "Rare": a word of at least four letters that is not among the first 10,000 whole-word tokens of
the model's BPE vocabulary (`` word``; BPE merges the most frequent pairs first, so early tokens are common
words), which leaves names, jargon and less frequent words. Lists are cut to what fits the decoder's prompt.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping

MIN_LETTERS = 4
COMMON_RANKS = 10_000


def common_words(vocab: Mapping[str, int], ranks: int = COMMON_RANKS) -> frozenset[str]:
    """The lowercase words that a GPT-2-style BPE vocabulary (tokenizer.json's ``model.vocab``: token ->
    id) holds as one token after a space (``Ġword``) among its first ``ranks`` ids: BPE numbers its tokens
    in the order it merged them, most frequent first."""
    return frozenset(token[1:].lower() for token, rank in vocab.items()
                     if rank < ranks and token.startswith("Ġ") and token[1:].isalpha())  # fmt: skip


def rare_words(words: Iterable[str], common: frozenset[str]) -> list[str]:
    """The distinct rare words of ``words`` (cleaned, lowercase), in order of first appearance."""
    seen: dict[str, None] = {}
    for word in words:
        if len(word) >= MIN_LETTERS and word.isalpha() and word not in common:
            seen.setdefault(word)
    return list(seen)


def biasing_lists(rare_by_track: Mapping[str, list[str]], fits: Callable[[list[str]], bool],
                  seed: int = 0) -> dict[str, list[str]]:  # fmt: skip
    """Per track: its rare words and as many distractors (the other tracks' rare words that it lacks),
    paired one to one in a deterministic shuffle and taken in pairs while ``fits`` holds, so a list cut to
    the prompt keeps as many of its own words as distractors."""
    lists = {}
    for track, own in rare_by_track.items():
        pool = sorted({w for other, words in rare_by_track.items() if other != track for w in words} - set(own))
        rng = random.Random(f"{seed}:{track}")
        own_shuffled, distractors = rng.sample(own, len(own)), rng.sample(pool, min(len(pool), len(own)))
        chosen: list[str] = []
        for pair in zip(own_shuffled, distractors, strict=False):
            candidate = chosen + rng.sample(pair, 2)
            if not fits(candidate):
                break
            chosen = candidate
        lists[track] = chosen
    return lists


def recall(words: Iterable[str], hypothesis: Iterable[str]) -> tuple[int, int]:
    """(found, asked): how many of ``words`` the hypothesis' words hold."""
    said = set(hypothesis)
    wanted = list(words)
    return sum(w in said for w in wanted), len(wanted)
